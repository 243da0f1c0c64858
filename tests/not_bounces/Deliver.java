package org.example.mail;

import java.util.List;
import java.util.Map;

/** Maps SMTP replies to what the help desk should tell the user. */
public class Deliver {
    private static final Map<String, String> ADVICE = Map.of(
        "5.1.1", "Check the address for typos.",
        "5.2.2", "The recipient's mailbox is full; try again later.",
        "5.7.1", "The receiving server refused the message by policy."
    );

    public static String advice(String status) {
        return ADVICE.getOrDefault(status, "Forward the full reply to the mail team.");
    }

    public static void main(String[] args) {
        List<String> examples = List.of("550 5.1.1 User unknown", "452 4.2.2 Over quota");
        for (String e : examples) {
            System.out.println(advice(e.split(" ")[1]));
        }
    }
}
