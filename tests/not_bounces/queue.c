/* queue.c - a fixed-size ring of outgoing message ids.
 * Messages that get "550 5.1.1 User unknown" are dropped by the caller,
 * "421 4.3.2 Service shutting down" ones stay queued. */
#include <stdio.h>
#include <string.h>

#define QUEUE_MAX 1024

static char ids[QUEUE_MAX][64];
static int head, tail;

int queue_push(const char *id)
{
    int next = (tail + 1) % QUEUE_MAX;
    if (next == head)
        return -1; /* full */
    strncpy(ids[tail], id, sizeof ids[tail] - 1);
    tail = next;
    return 0;
}

const char *queue_pop(void)
{
    if (head == tail)
        return NULL;
    const char *id = ids[head];
    head = (head + 1) % QUEUE_MAX;
    return id;
}

int main(void)
{
    queue_push("4BqX2m1zJ9z9v");
    printf("%s\n", queue_pop());
    return 0;
}
