//! Follows a process's JSON lines (the agent's stdout, the QEMU guest's results port): the
//! agent's own lines (those with `event`) are read as the [`Line`] type the agent writes them
//! with, so a line that does not fit the schema fails the wait instead of passing unnoticed;
//! anything else (failsafe-sim's lines, the guest's) comes through as it is.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use netvsc_user::report::lines::{Change, Line, Ready};
use serde_json::Value;

/// One JSON line.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// One of the agent's lines (boxed: a `ready` line is large, the others small).
    Agent(Box<Line>),
    /// A line of another writer on the same stream.
    Other(Value),
    /// A line with `event` that is not a [`Line`]: the writer and the schema disagree.
    Malformed { text: String, error: String },
}

impl Output {
    pub fn parse(text: &str) -> Option<Output> {
        let value: Value = serde_json::from_str(text).ok()?;
        if value.get("event").is_none() {
            return Some(Output::Other(value));
        }
        Some(match serde_json::from_value::<Line>(value) {
            Ok(line) => Output::Agent(Box::new(line)),
            Err(err) => Output::Malformed { text: text.to_owned(), error: err.to_string() },
        })
    }

    pub fn line(&self) -> Option<&Line> {
        match self {
            Output::Agent(line) => Some(line),
            _ => None,
        }
    }

    pub fn other(&self) -> Option<&Value> {
        match self {
            Output::Other(value) => Some(value),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    #[error("the stream ended before {what}")]
    Ended { what: String },
    #[error("a line does not match the JSON-line schema ({error}): {text}")]
    Malformed { text: String, error: String },
}

/// Whether lines passed over by one wait can satisfy a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Each wait looks only at lines after those already looked at (one writer, in order).
    Strict,
    /// Lines a wait passed over stay for later waits (several writers share the stream, so an
    /// expected line may arrive after one expected later).
    Any,
}

pub struct JsonLines {
    lines: Receiver<Output>,
    order: Order,
    /// Every line received so far, in order.
    pub seen: Vec<Output>,
    /// With [`Order::Any`]: lines no wait has taken yet.
    backlog: Vec<Output>,
}

impl JsonLines {
    /// Reads `stream` on a thread of its own until it ends. Lines that are not JSON are
    /// written to stderr (a log line in the wrong place should be seen, not lost).
    pub fn follow(stream: impl Read + Send + 'static, order: Order) -> Self {
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stream).lines().map_while(Result::ok) {
                let text = text.trim_matches(|c: char| c == '\r' || c.is_whitespace());
                match Output::parse(text) {
                    Some(output) => {
                        if tx.send(output).is_err() {
                            break;
                        }
                    }
                    None if text.is_empty() => {}
                    None => eprintln!("(non-JSON output) {text}"),
                }
            }
        });
        Self { lines, order, seen: Vec::new(), backlog: Vec::new() }
    }

    /// Waits up to `timeout` for a line `pick` accepts, and returns what it picked.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Output) -> Option<T>,
    ) -> Result<T, WaitError> {
        if let Some((i, picked)) = self.backlog.iter().enumerate().find_map(|(i, o)| pick(o).map(|p| (i, p))) {
            self.backlog.remove(i);
            return Ok(picked);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let output = match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(output) => output,
                Err(RecvTimeoutError::Timeout) => return Err(WaitError::Timeout { what: what.to_owned(), timeout }),
                Err(RecvTimeoutError::Disconnected) => return Err(WaitError::Ended { what: what.to_owned() }),
            };
            self.seen.push(output.clone());
            if let Output::Malformed { text, error } = output {
                return Err(WaitError::Malformed { text, error });
            }
            if let Some(picked) = pick(&output) {
                return Ok(picked);
            }
            if self.order == Order::Any {
                self.backlog.push(output);
            }
        }
    }

    /// The next agent line `pred` accepts.
    pub fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Line) -> bool,
    ) -> Result<Line, WaitError> {
        self.wait_for(what, timeout, |o| o.line().filter(|l| pred(l)).cloned())
    }

    /// The `ready` line.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, WaitError> {
        self.wait_for("the agent to be ready", timeout, |o| match o.line()? {
            Line::Ready(ready) => Some(ready.clone()),
            _ => None,
        })
    }

    /// The next change line with event `event` (`managed`, `associated`, `dissociated`,
    /// `renamed`) that `pred` accepts.
    pub fn wait_change(
        &mut self,
        event: &str,
        timeout: Duration,
        pred: impl Fn(&Change) -> bool,
    ) -> Result<Change, WaitError> {
        self.wait_for(&format!("a {event} line"), timeout, |o| {
            let line = o.line()?;
            line.change().filter(|c| line.event() == event && pred(c)).cloned()
        })
    }

    /// The next line of another writer that `pred` accepts.
    pub fn wait_other(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, WaitError> {
        self.wait_for(what, timeout, |o| o.other().filter(|v| pred(v)).cloned())
    }

    /// Whatever arrives within `period` (also kept for later waits with [`Order::Any`]).
    pub fn collect_for(&mut self, period: Duration) -> Vec<Output> {
        let deadline = Instant::now() + period;
        let got: Vec<Output> =
            std::iter::from_fn(|| self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok())
                .collect();
        self.seen.extend(got.iter().cloned());
        if self.order == Order::Any {
            self.backlog.extend(got.iter().cloned());
        }
        got
    }

    /// With [`Order::Any`]: drops the kept lines `pred` accepts, so that a later wait sees only
    /// new ones (say, the answer to a request that an earlier, unanswered one would shadow).
    pub fn discard(&mut self, pred: impl Fn(&Output) -> bool) {
        self.backlog.retain(|output| !pred(output));
    }

    /// The agent lines seen so far.
    pub fn seen_lines(&self) -> impl Iterator<Item = &Line> {
        self.seen.iter().filter_map(Output::line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &'static str, order: Order) -> JsonLines {
        JsonLines::follow(text.as_bytes(), order)
    }

    const STREAM: &str = concat!(
        r#"{"argv":["app"]}"#,
        "\n",
        r#"{"event":"resync","source":"netlink","reason":"overrun"}"#,
        "\n",
        concat!(
            r#"{"event":"stats","source":"netlink","stats":{"events":3,"relevant":1,"refill_ticks":0,"resyncs":1},"#,
            r#""held":{"open_fds":9,"rss_kib":4096,"tasks":2,"waiting":0}}"#
        ),
        "\n",
    );

    #[test]
    fn agent_lines_are_typed_and_others_kept_as_they_are() {
        let mut follow = lines(STREAM, Order::Strict);
        let argv = follow.wait_other("argv", Duration::from_secs(5), |v| v.get("argv").is_some()).unwrap();
        assert_eq!(argv["argv"][0], "app");
        let stats = follow.wait_line("stats", Duration::from_secs(5), |l| matches!(l, Line::Stats { .. })).unwrap();
        let Line::Stats { stats, .. } = stats else { panic!("{stats:?}") };
        assert_eq!((stats.events, stats.resyncs), (3, 1));
        // In strict order the resync line was passed over for good.
        let err = follow.wait_line("resync", Duration::from_secs(5), |l| matches!(l, Line::Resync { .. }));
        assert!(matches!(err, Err(WaitError::Ended { .. })), "{err:?}");
        assert_eq!(follow.seen.len(), 3);
    }

    #[test]
    fn in_any_order_passed_over_lines_wait_for_later() {
        let mut follow = lines(STREAM, Order::Any);
        follow.wait_line("stats", Duration::from_secs(5), |l| matches!(l, Line::Stats { .. })).unwrap();
        let resync = follow.wait_line("resync", Duration::from_secs(5), |l| matches!(l, Line::Resync { .. })).unwrap();
        assert!(matches!(resync, Line::Resync { ref reason, .. } if reason == "overrun"), "{resync:?}");
    }

    #[test]
    fn discarded_lines_no_longer_satisfy_a_wait() {
        let mut follow = lines(STREAM, Order::Any);
        follow.wait_other("argv", Duration::from_secs(5), |v| v.get("argv").is_some()).unwrap();
        follow.collect_for(Duration::from_millis(100));
        follow.discard(|o| matches!(o.line(), Some(Line::Stats { .. })));
        let stats = follow.wait_line("stats", Duration::from_millis(200), |l| matches!(l, Line::Stats { .. }));
        assert!(matches!(stats, Err(WaitError::Ended { .. })), "{stats:?}");
        assert!(follow.wait_line("resync", Duration::from_secs(5), |l| matches!(l, Line::Resync { .. })).is_ok());
    }

    #[test]
    fn a_line_off_the_schema_fails_the_wait() {
        let mut follow = lines("{\"event\":\"associated\",\"netvsc\":\"eth1\"}\n", Order::Strict);
        let err = follow.wait_line("anything", Duration::from_secs(5), |_| true);
        assert!(matches!(err, Err(WaitError::Malformed { .. })), "{err:?}");
    }
}
