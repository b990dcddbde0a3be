//! A load client: one thread sending `GET` to a loopback HTTP server over
//! and over, recording every response, to prove that a switch of traffic
//! (a proxy reload, a deploy) fails no request. And a [`Writer`]: one
//! thread `POST`ing unique ids, retrying each one refused with `503` and
//! `Retry-After` until it is acknowledged, to prove that a deploy that
//! pauses writes loses none.
//!
//! Each request is a new TCP connection speaking HTTP/1.0 (the server
//! closes after the response, so a response is complete exactly when the
//! connection ends), with short timeouts. A refused connection, a timeout,
//! a status other than 200 or a body shorter or longer than its
//! `Content-Length` is a failure.
//!
//! Invariant: the thread stops on [`Load::stop`], on drop (also when the
//! test panics), after [`MAX_DURATION`] or after [`MAX_REQUESTS`], whichever
//! comes first; it pauses [`PAUSE`] between requests so that it never
//! takes a whole core from the server it measures.
//!
//! The writer's invariants are the same (bounded by [`MAX_DURATION`] and
//! [`MAX_REQUESTS`], [`PAUSE`] between requests, stopped on drop).
//!
//! ```ignore
//! let load = Load::start(&nginx.url("/"));
//! load.wait_for_release("v1", 10);
//! nginx.reload();
//! let report = load.stop();
//! assert_eq!(report.failures, 0, "{report}");
//! assert!(report.saw("v1") && report.saw("v2"), "{report}");
//!
//! let writer = Writer::start(&nginx.url("/write"));
//! writer.wait_acked(20, 10);
//! /* pause, migrate, switch, resume */
//! let report = writer.stop();
//! assert_eq!(report.failures, 0, "{report}");
//! assert_eq!(dbapp::item_ids(&pg), report.acked_set(), "{report}");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client never runs longer than this, whatever the test does.
pub const MAX_DURATION: Duration = Duration::from_secs(120);
/// Nor sends more requests than this.
pub const MAX_REQUESTS: usize = 200_000;
/// Between two requests.
pub const PAUSE: Duration = Duration::from_millis(3);
/// For connecting, sending and reading each response.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Failure descriptions kept in a report (the count is always exact).
pub const FAILURES_KEPT: usize = 10;
/// A [`Writer`] retries a write refused with `503` and `Retry-After` after
/// this long, not the second `Retry-After: 1` asks for: the end of a pause
/// shows within a few milliseconds.
pub const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One HTTP response, read to the end.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr` (HTTP/1.0, a new connection, [`TIMEOUT`] each
/// way). `Err` says what went wrong: connect, send, read, a malformed
/// response or a partial body; any status is `Ok`.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    request(addr, "GET", path, b"")
}

/// `POST path` with `body` on `addr`, like [`get`].
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Response, String> {
    request(addr, "POST", path, body)
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if let Some(len) = headers.get("content-length")
        && len.parse() != Ok(body.len())
    {
        return Err(format!("partial body: {} bytes, Content-Length {len}", body.len()));
    }
    Ok(Response { status, headers, body })
}

/// Where a load goes: `http://127.0.0.1:PORT/path`, `127.0.0.1:PORT` (path
/// `/`) or `localhost:PORT/path`; anything but loopback is refused.
pub fn parse_target(target: &str) -> (SocketAddr, String) {
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let hostport = hostport.replace("localhost:", "127.0.0.1:");
    let addr: SocketAddr = hostport
        .parse()
        .unwrap_or_else(|e| panic!("load target {target:?}: not HOST:PORT ({e})"));
    assert!(addr.ip().is_loopback(), "load target {target:?}: loopback only");
    (addr, path)
}

/// One request as the client saw it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the client started connecting.
    pub sent: Instant,
    /// When the response was complete (or the request failed).
    pub done: Instant,
    /// The response, or why there was none.
    pub outcome: Result<Response, String>,
}

impl Sample {
    /// A 200 response.
    pub fn ok(&self) -> bool {
        self.outcome.as_ref().is_ok_and(|r| r.status == 200)
    }

    /// The release that answered: the body's first word (`v1 pid=42` ->
    /// `v1`), for a 200 response.
    pub fn release(&self) -> Option<&str> {
        match &self.outcome {
            Ok(r) if r.status == 200 => std::str::from_utf8(&r.body).ok()?.split_whitespace().next(),
            _ => None,
        }
    }

    fn describe(&self, start: Instant) -> String {
        let at = self.sent.duration_since(start).as_secs_f64();
        match &self.outcome {
            Ok(r) => format!(
                "at {at:.3}s: status {}: {:?}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
            ),
            Err(e) => format!("at {at:.3}s: {e}"),
        }
    }
}

/// A running load. See the module docs.
pub struct Load {
    target: String,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Start sending `GET` to `target` (see [`parse_target`]).
    pub fn start(target: &str) -> Load {
        let (addr, path) = parse_target(target);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_DURATION && n < MAX_REQUESTS {
                    let sent = Instant::now();
                    let outcome = get(addr, &path);
                    let sample = Sample {
                        sent,
                        done: Instant::now(),
                        outcome,
                    };
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                    n += 1;
                    std::thread::sleep(PAUSE);
                }
            })
        };
        Load {
            target: target.to_string(),
            started,
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// Requests sent so far (answered or failed).
    pub fn count(&self) -> usize {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wait until `release` has answered a request sent after this call;
    /// panics after `secs` (naming what answered instead).
    pub fn wait_for_release(&self, release: &str, secs: u64) {
        let since = Instant::now();
        let deadline = since + Duration::from_secs(secs);
        loop {
            {
                let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
                if samples
                    .iter()
                    .rev()
                    .take_while(|s| s.sent >= since)
                    .any(|s| s.release() == Some(release))
                {
                    return;
                }
                if Instant::now() > deadline {
                    let last = samples.last().map(|s| s.describe(self.started));
                    panic!(
                        "{release} did not answer {} within {secs} s; the last request: {last:?}",
                        self.target
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until `n` more requests were sent after this call (and answered
    /// or failed); panics after `secs`.
    pub fn wait_requests(&self, n: usize, secs: u64) {
        let want = self.count() + n + 1; // the one in flight now may have been sent before
        super::wait_for(secs, &format!("{n} more requests to {}", self.target), || {
            self.count() >= want
        });
    }

    /// Stop the client and report what it saw.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        LoadReport::new(self.target.clone(), self.started, samples)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What a [`Load`] saw.
pub struct LoadReport {
    pub target: String,
    pub started: Instant,
    pub total: usize,
    /// Requests that got no 200 response.
    pub failures: usize,
    /// The first [`FAILURES_KEPT`] failures, described (time since start, what went wrong).
    pub first_failures: Vec<String>,
    /// 200 responses per release (the body's first word).
    pub per_release: BTreeMap<String, usize>,
    /// The longest time between two consecutive 200 responses.
    pub longest_gap: Duration,
    /// From the first request sent to the last response.
    pub elapsed: Duration,
    /// Every request, in order.
    pub samples: Vec<Sample>,
}

impl LoadReport {
    fn new(target: String, started: Instant, samples: Vec<Sample>) -> LoadReport {
        let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
        let mut per_release = BTreeMap::new();
        for r in samples.iter().filter_map(Sample::release) {
            *per_release.entry(r.to_string()).or_default() += 1;
        }
        let oks: Vec<Instant> = samples.iter().filter(|s| s.ok()).map(|s| s.done).collect();
        let longest_gap = oks
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        let elapsed = match (samples.first(), samples.last()) {
            (Some(a), Some(b)) => b.done.duration_since(a.sent),
            _ => Duration::ZERO,
        };
        LoadReport {
            target,
            started,
            total: samples.len(),
            failures: failed.len(),
            first_failures: failed.iter().take(FAILURES_KEPT).map(|s| s.describe(started)).collect(),
            per_release,
            longest_gap,
            elapsed,
            samples,
        }
    }

    /// `release` answered at least one request.
    pub fn saw(&self, release: &str) -> bool {
        self.per_release.contains_key(release)
    }

    /// Requests per second over the whole run.
    pub fn rps(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.total as f64 / self.elapsed.as_secs_f64()
    }

    /// 200 responses per release among the requests sent at or after `t`.
    pub fn releases_since(&self, t: Instant) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.samples.iter().filter(|s| s.sent >= t).filter_map(Sample::release) {
            *out.entry(r.to_string()).or_default() += 1;
        }
        out
    }

    /// The first request sent at or after `t` that `release` answered.
    pub fn first_from(&self, release: &str, t: Instant) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.sent >= t && s.release() == Some(release))
    }

    /// The last request that `release` answered.
    pub fn last_from(&self, release: &str) -> Option<&Sample> {
        self.samples.iter().rev().find(|s| s.release() == Some(release))
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load on {}: {} requests in {:.2} s ({:.0}/s), {} failed; per release {:?}; longest gap between 200s {} ms",
            self.target,
            self.total,
            self.elapsed.as_secs_f64(),
            self.rps(),
            self.failures,
            self.per_release,
            self.longest_gap.as_millis(),
        )?;
        for line in &self.first_failures {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// What happened to one `POST` of a [`Writer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// 200: the write is committed.
    Acked,
    /// 503 with `Retry-After`: refused, not forwarded; sent again.
    Refused,
    /// Anything else (another status, a 503 without `Retry-After`, no
    /// response): the write may or may not have happened; not sent again.
    Failed(String),
}

/// One `POST` as the writer saw it.
#[derive(Clone, Debug)]
pub struct WriteSample {
    /// The id in the body.
    pub id: String,
    /// When the client started connecting.
    pub sent: Instant,
    /// When the response was complete (or the request failed).
    pub done: Instant,
    pub outcome: WriteOutcome,
}

impl WriteSample {
    fn describe(&self, start: Instant) -> String {
        let at = self.sent.duration_since(start).as_secs_f64();
        match &self.outcome {
            WriteOutcome::Acked => format!("at {at:.3}s: {} acknowledged", self.id),
            WriteOutcome::Refused => format!("at {at:.3}s: {} refused (503)", self.id),
            WriteOutcome::Failed(e) => format!("at {at:.3}s: {}: {e}", self.id),
        }
    }
}

/// Counts a [`Writer`]'s thread keeps as it goes, with every sample.
#[derive(Default)]
struct WriterState {
    samples: Vec<WriteSample>,
    acked: usize,
    refused: usize,
    failed: usize,
    /// The id being sent again when the run ended.
    pending: Option<String>,
}

/// Tells writers of one test process apart in their ids.
static WRITERS: AtomicUsize = AtomicUsize::new(0);

/// A running writer. See the module docs.
pub struct Writer {
    target: String,
    started: Instant,
    state: Arc<Mutex<WriterState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start `POST`ing to `target` (see [`parse_target`]; e.g.
    /// `http://127.0.0.1:PORT/write`) one id after the other, each body a
    /// new id (`w1-000001`, `w1-000002`, …; the number before the dash
    /// tells writers of one test process apart). A write refused with `503`
    /// and `Retry-After` is sent again after [`RETRY_PAUSE`], the same id,
    /// until acknowledged or the run ends; any other outcome moves on.
    pub fn start(target: &str) -> Writer {
        let (addr, path) = parse_target(target);
        let prefix = format!("w{}", WRITERS.fetch_add(1, Ordering::SeqCst) + 1);
        let state = Arc::new(Mutex::new(WriterState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut attempts, mut n) = (0, 0);
                let mut id: Option<String> = None;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_DURATION && attempts < MAX_REQUESTS {
                    let this = id.take().unwrap_or_else(|| {
                        n += 1;
                        format!("{prefix}-{n:06}")
                    });
                    let sent = Instant::now();
                    let outcome = match post(addr, &path, this.as_bytes()) {
                        Ok(r) if r.status == 200 => WriteOutcome::Acked,
                        Ok(r) if r.status == 503 && r.headers.contains_key("retry-after") => WriteOutcome::Refused,
                        Ok(r) => WriteOutcome::Failed(format!(
                            "status {}: {:?}",
                            r.status,
                            String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
                        )),
                        Err(e) => WriteOutcome::Failed(e),
                    };
                    let refused = outcome == WriteOutcome::Refused;
                    {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        match &outcome {
                            WriteOutcome::Acked => s.acked += 1,
                            WriteOutcome::Refused => s.refused += 1,
                            WriteOutcome::Failed(_) => s.failed += 1,
                        }
                        s.samples.push(WriteSample {
                            id: this.clone(),
                            sent,
                            done: Instant::now(),
                            outcome,
                        });
                        s.pending = refused.then(|| this.clone());
                    }
                    attempts += 1;
                    if refused {
                        id = Some(this);
                        std::thread::sleep(RETRY_PAUSE);
                    } else {
                        std::thread::sleep(PAUSE);
                    }
                }
            })
        };
        Writer {
            target: target.to_string(),
            started,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.acked, s.refused, s.failed)
    }

    /// Writes acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.counts().0
    }

    /// `503` answers so far.
    pub fn refused_count(&self) -> usize {
        self.counts().1
    }

    /// Failures so far (neither 200 nor 503 with `Retry-After`).
    pub fn failure_count(&self) -> usize {
        self.counts().2
    }

    /// Wait until `n` more writes are acknowledged after this call; panics
    /// after `secs` (with the last outcome).
    pub fn wait_acked(&self, n: usize, secs: u64) {
        let want = self.acked_count() + n;
        self.wait(secs, &format!("{n} more acknowledged writes"), |(acked, _, _)| {
            acked >= want
        });
    }

    /// Wait until `n` more writes are refused (503) after this call; panics
    /// after `secs`.
    pub fn wait_refused(&self, n: usize, secs: u64) {
        let want = self.refused_count() + n;
        self.wait(secs, &format!("{n} more refused writes"), |(_, refused, _)| {
            refused >= want
        });
    }

    fn wait(&self, secs: u64, what: &str, done: impl Fn((usize, usize, usize)) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self.counts()) {
            if Instant::now() > deadline {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let last = s.samples.last().map(|x| x.describe(self.started));
                panic!(
                    "no {what} to {} within {secs} s ({} acked, {} refused, {} failed); the last write: {last:?}",
                    self.target, s.acked, s.refused, s.failed
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop the writer and report what it saw.
    pub fn stop(mut self) -> WriterReport {
        self.halt();
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()));
        WriterReport::new(self.target.clone(), self.started, state)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What a [`Writer`] saw.
pub struct WriterReport {
    pub target: String,
    pub started: Instant,
    /// Requests sent (every retry counts).
    pub attempts: usize,
    /// Acknowledged ids (200), in order; each once.
    pub acked: Vec<String>,
    /// `503` answers with `Retry-After`.
    pub refused_503: usize,
    /// When the first refused write was sent.
    pub first_503: Option<Instant>,
    /// When the last refused write's answer came.
    pub last_503: Option<Instant>,
    /// Writes neither acknowledged nor refused.
    pub failures: usize,
    /// The first [`FAILURES_KEPT`] failures, described.
    pub first_failures: Vec<String>,
    /// The ids of failed writes: each may or may not be in the database.
    pub failed_ids: Vec<String>,
    /// The id still refused when the run ended (never acknowledged).
    pub pending: Option<String>,
    /// The longest time between two consecutive acknowledgements.
    pub longest_gap: Duration,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
    /// Every request, in order.
    pub samples: Vec<WriteSample>,
}

impl WriterReport {
    fn new(target: String, started: Instant, state: WriterState) -> WriterReport {
        let samples = state.samples;
        let acked: Vec<String> = samples
            .iter()
            .filter(|s| s.outcome == WriteOutcome::Acked)
            .map(|s| s.id.clone())
            .collect();
        let refused: Vec<&WriteSample> = samples.iter().filter(|s| s.outcome == WriteOutcome::Refused).collect();
        let failed: Vec<&WriteSample> = samples
            .iter()
            .filter(|s| matches!(s.outcome, WriteOutcome::Failed(_)))
            .collect();
        let acks: Vec<Instant> = samples
            .iter()
            .filter(|s| s.outcome == WriteOutcome::Acked)
            .map(|s| s.done)
            .collect();
        let longest_gap = acks
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        let elapsed = match (samples.first(), samples.last()) {
            (Some(a), Some(b)) => b.done.duration_since(a.sent),
            _ => Duration::ZERO,
        };
        WriterReport {
            target,
            started,
            attempts: samples.len(),
            acked,
            refused_503: refused.len(),
            first_503: refused.first().map(|s| s.sent),
            last_503: refused.last().map(|s| s.done),
            failures: failed.len(),
            first_failures: failed.iter().take(FAILURES_KEPT).map(|s| s.describe(started)).collect(),
            failed_ids: failed.iter().map(|s| s.id.clone()).collect(),
            pending: state.pending,
            longest_gap,
            elapsed,
            samples,
        }
    }

    /// The acknowledged ids as a set (to compare with a database's).
    pub fn acked_set(&self) -> std::collections::BTreeSet<String> {
        self.acked.iter().cloned().collect()
    }

    /// From the first refused write sent to the last refusal received.
    pub fn refused_span(&self) -> Option<(Instant, Instant)> {
        Some((self.first_503?, self.last_503?))
    }

    /// Refused writes not wholly inside `from..=to` (a refusal can only be
    /// answered after the pause began and sent before it ended).
    pub fn refused_outside(&self, from: Instant, to: Instant) -> Vec<&WriteSample> {
        self.samples
            .iter()
            .filter(|s| s.outcome == WriteOutcome::Refused && (s.done < from || s.sent > to))
            .collect()
    }

    /// Requests per second over the whole run.
    pub fn rps(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.attempts as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for WriterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = match self.refused_span() {
            Some((a, b)) => format!(
                "{:.3}..{:.3} s",
                a.duration_since(self.started).as_secs_f64(),
                b.duration_since(self.started).as_secs_f64()
            ),
            None => "none".into(),
        };
        write!(
            f,
            "writer on {}: {} requests in {:.2} s ({:.0}/s), {} acknowledged, {} refused (503, {span}), {} failed{}; longest gap between acknowledgements {} ms",
            self.target,
            self.attempts,
            self.elapsed.as_secs_f64(),
            self.rps(),
            self.acked.len(),
            self.refused_503,
            self.failures,
            self.pending
                .as_ref()
                .map(|p| format!(", {p} still refused at the end"))
                .unwrap_or_default(),
            self.longest_gap.as_millis(),
        )?;
        for line in &self.first_failures {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}
