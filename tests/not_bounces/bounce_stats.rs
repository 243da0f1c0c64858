//! Counts replies per enhanced status code ("5.1.1", "4.2.2", ...) for a dashboard.
use std::collections::HashMap;

pub struct Stats {
    by_status: HashMap<String, u64>,
}

impl Stats {
    pub fn new() -> Self {
        Stats { by_status: HashMap::new() }
    }

    /// Feed one reply line like "550 5.7.1 Service unavailable; client blocked".
    pub fn add(&mut self, reply: &str) {
        let status = reply.split_whitespace().nth(1).unwrap_or("0.0.0");
        *self.by_status.entry(status.to_string()).or_insert(0) += 1;
    }

    pub fn top(&self) -> Option<(&String, &u64)> {
        self.by_status.iter().max_by_key(|(_, n)| **n)
    }
}

fn main() {
    let mut s = Stats::new();
    s.add("550 5.1.1 no such user");
    println!("{:?}", s.top());
}
