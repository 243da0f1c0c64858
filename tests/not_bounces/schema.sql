-- Tables for the delivery dashboard.
CREATE TABLE replies (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    code        SMALLINT NOT NULL CHECK (code BETWEEN 200 AND 599),
    status      TEXT,            -- enhanced status such as 5.1.1 or 4.2.2
    text        TEXT NOT NULL
);

CREATE INDEX replies_status ON replies (status);

INSERT INTO replies (code, status, text) VALUES
    (250, '2.0.0', 'Ok: queued as 4BqX2m'),
    (452, '4.2.2', 'Mailbox over quota');

SELECT status, count(*) FROM replies WHERE code >= 500 GROUP BY status ORDER BY 2 DESC;
