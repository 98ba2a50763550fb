//! Deterministic demo logs shaped like what SLS consumer groups deliver.
//!
//! One generator feeds both `pipe`'s `demo` source and the testkit emulators
//! (SLS preload, Elasticsearch fixtures), so a demo pipeline and an emulator
//! test see the same kinds of data. The same seed always yields the same
//! sequence of logs; only the timestamps passed in by the caller vary.
//!
//! The mix: application logs from hosts such as `wallet-qa-01` and
//! `api-prod-03`, some with Java or Python tracebacks and `Exception` lines,
//! some over 1 KiB; ActionTrail audit events (topic `actiontrail_audit_event`)
//! whose `event` field holds a JSON document as a string; occasional
//! `Defend` security-agent lines.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The topic of ActionTrail audit events; their `event` field is JSON text.
pub const ACTIONTRAIL_TOPIC: &str = "actiontrail_audit_event";

/// Host names, in the naming scheme the seed alert routing keys on.
pub const HOSTS: &[&str] = &[
    "wallet-qa-01",
    "wallet-prod-02",
    "api-prod-03",
    "admin-prod-01",
    "engine-prod-04",
    "php-web-02",
    "gateway-prod-01",
    "search-prod-05",
];

/// One log as SLS stores it: time, topic, source, tags and content pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLog {
    /// Unix seconds.
    pub time: u32,
    /// Nanoseconds within the second.
    pub time_ns: u32,
    pub topic: String,
    /// The client IP that wrote the log (SLS `__source__`).
    pub source: String,
    /// Log-group tags (`__tag__:KEY` after flattening).
    pub tags: Vec<(String, String)>,
    /// Content fields, in order.
    pub contents: Vec<(String, String)>,
}

impl DemoLog {
    /// Bytes of key and value text, the measure SLS quotas and pipe's
    /// throughput figures use for raw log bytes.
    pub fn raw_size(&self) -> usize {
        self.contents.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>()
            + self.tags.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>()
            + self.topic.len()
            + self.source.len()
            + 4
    }
}

/// Produces demo logs; deterministic for a seed.
#[derive(Debug, Clone)]
pub struct DemoLogGenerator {
    rng: SmallRng,
    sequence: u64,
}

const LOGGERS: &[&str] = &[
    "com.example.wallet.TransferService",
    "com.example.api.OrderController",
    "com.example.engine.Matcher",
    "app.handlers.checkout",
    "app.tasks.settlement",
];

const INFO_MESSAGES: &[&str] = &[
    "request completed",
    "user login succeeded",
    "cache refreshed",
    "order accepted",
    "settlement batch finished",
    "health check ok",
    "connection pool resized",
];

const ACTION_NAMES: &[&str] =
    &["ConsoleSignin", "CreateInstance", "DeleteBucket", "PutObject", "AttachPolicy", "StopInstance"];

impl DemoLogGenerator {
    pub fn new(seed: u64) -> DemoLogGenerator {
        DemoLogGenerator { rng: SmallRng::seed_from_u64(seed), sequence: 0 }
    }

    /// The next log, stamped with `unix_time` seconds.
    pub fn next_log(&mut self, unix_time: u32) -> DemoLog {
        self.sequence += 1;
        let host = HOSTS[self.rng.random_range(0..HOSTS.len())];
        let time_ns = self.rng.random_range(0..1_000_000_000);
        let source = format!("10.0.{}.{}", self.rng.random_range(0..8), self.rng.random_range(2..250));
        let tags = vec![
            ("__hostname__".to_string(), host.to_string()),
            ("__path__".to_string(), format!("/data/logs/{}/app.log", service_of(host))),
            ("__receive_time__".to_string(), unix_time.to_string()),
        ];
        let roll = self.rng.random_range(0..100);
        let (topic, contents) = match roll {
            0..=9 => (ACTIONTRAIL_TOPIC.to_string(), self.actiontrail(host, unix_time)),
            10..=14 => {
                let message = self.java_traceback();
                ("app".to_string(), self.app_log(host, "ERROR", message))
            }
            15..=19 => {
                let message = self.python_traceback();
                ("app".to_string(), self.app_log(host, "ERROR", message))
            }
            20..=27 => {
                let message =
                    format!("{} failed: java.io.IOException: Connection reset by peer", self.pick(INFO_MESSAGES));
                ("app".to_string(), self.app_log(host, "WARN", message))
            }
            28..=31 => {
                let message = self.long_message();
                ("app".to_string(), self.app_log(host, "INFO", message))
            }
            32..=33 => ("security".to_string(), self.defend_log(host)),
            _ => {
                let message = format!(
                    "{} in {} ms (request_id={:016x})",
                    self.pick(INFO_MESSAGES),
                    self.rng.random_range(1..900),
                    self.rng.random::<u64>()
                );
                ("app".to_string(), self.app_log(host, "INFO", message))
            }
        };
        DemoLog { time: unix_time, time_ns, topic, source, tags, contents }
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.rng.random_range(0..choices.len())]
    }

    fn app_log(&mut self, host: &str, level: &str, message: String) -> Vec<(String, String)> {
        vec![
            ("level".to_string(), level.to_string()),
            ("logger".to_string(), self.pick(LOGGERS).to_string()),
            ("host".to_string(), host.to_string()),
            ("source".to_string(), format!("/data/logs/{}/app.log", service_of(host))),
            ("thread".to_string(), format!("worker-{}", self.rng.random_range(1..32))),
            ("seq".to_string(), self.sequence.to_string()),
            ("message".to_string(), message),
        ]
    }

    fn defend_log(&mut self, host: &str) -> Vec<(String, String)> {
        vec![
            ("level".to_string(), "WARN".to_string()),
            ("host".to_string(), host.to_string()),
            ("source".to_string(), "/opt/DefendAgent/logs/DefendAgent.log".to_string()),
            ("seq".to_string(), self.sequence.to_string()),
            (
                "message".to_string(),
                format!("blocked suspicious login from 203.0.113.{}", self.rng.random_range(1..255)),
            ),
        ]
    }

    fn java_traceback(&mut self) -> String {
        let exception = self.pick(&[
            "java.lang.NullPointerException",
            "java.lang.IllegalStateException: pool exhausted",
            "java.sql.SQLTransientConnectionException: timeout after 30000ms",
        ]);
        format!(
            "Exception in thread \"worker-{}\" {exception}\n\tat com.example.wallet.TransferService.transfer(TransferService.java:{})\n\tat com.example.api.OrderController.submit(OrderController.java:{})\n\tat java.base/java.lang.Thread.run(Thread.java:833)",
            self.rng.random_range(1..32),
            self.rng.random_range(40..400),
            self.rng.random_range(40..400)
        )
    }

    fn python_traceback(&mut self) -> String {
        let error = self.pick(&[
            "KeyError: 'user_id'",
            "ValueError: invalid literal for int()",
            "TimeoutError: read timed out",
        ]);
        format!(
            "Traceback (most recent call last):\n  File \"/srv/app/handlers/checkout.py\", line {}, in handle\n    order = build_order(payload)\n  File \"/srv/app/orders.py\", line {}, in build_order\n    return Order(**payload)\n{error}",
            self.rng.random_range(10..300),
            self.rng.random_range(10..300)
        )
    }

    fn long_message(&mut self) -> String {
        let mut message = String::from("slow query report: ");
        while message.len() < 1100 + self.rng.random_range(0..600) {
            message.push_str(&format!(
                "SELECT id, amount, status FROM transfers WHERE account_id = {} AND created_at > now() - interval '1 day'; ",
                self.rng.random_range(10_000..99_999)
            ));
        }
        message
    }

    fn actiontrail(&mut self, host: &str, unix_time: u32) -> Vec<(String, String)> {
        let event = format!(
            concat!(
                r#"{{"eventId":"{:08x}-{:04x}","eventName":"{}","eventSource":"ecs.aliyuncs.com","#,
                r#""eventTime":{},"sourceIpAddress":"198.51.100.{}","userAgent":"aliyun-cli/3.0","#,
                r#""userIdentity":{{"type":"ram-user","principalId":"{}","accountId":"1234567890","userName":"ops-{}"}},"#,
                r#""requestParameters":{{"RegionId":"cn-hangzhou","InstanceId":"i-{:012x}"}},"acsRegion":"cn-hangzhou","errorCode":null}}"#
            ),
            self.rng.random::<u32>(),
            self.rng.random::<u16>(),
            self.pick(ACTION_NAMES),
            unix_time,
            self.rng.random_range(1..255),
            self.rng.random_range(100_000..999_999),
            self.rng.random_range(1..20),
            self.rng.random::<u64>() & 0xffff_ffff_ffff
        );
        vec![
            ("host".to_string(), host.to_string()),
            ("seq".to_string(), self.sequence.to_string()),
            ("event".to_string(), event),
        ]
    }
}

fn service_of(host: &str) -> &str {
    host.split('-').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_logs() {
        let mut first = DemoLogGenerator::new(7);
        let mut second = DemoLogGenerator::new(7);
        for _ in 0..200 {
            assert_eq!(first.next_log(1_700_000_000), second.next_log(1_700_000_000));
        }
    }

    #[test]
    fn the_mix_has_every_shape() {
        let mut generator = DemoLogGenerator::new(1);
        let logs: Vec<DemoLog> = (0..2000).map(|_| generator.next_log(1_700_000_000)).collect();
        let message =
            |log: &DemoLog| log.contents.iter().find(|(key, _)| key == "message").map(|(_, value)| value.clone());
        assert!(logs.iter().any(|log| log.topic == ACTIONTRAIL_TOPIC));
        assert!(logs.iter().filter_map(message).any(|text| text.starts_with("Traceback")));
        assert!(logs.iter().filter_map(message).any(|text| text.contains("Exception")));
        assert!(logs.iter().filter_map(message).any(|text| text.len() > 1024));
        assert!(logs.iter().any(|log| log.contents.iter().any(|(_, value)| value.contains("Defend"))));
        assert!(logs.iter().any(|log| log.tags.iter().any(|(_, value)| value == "wallet-qa-01")));
    }
}
