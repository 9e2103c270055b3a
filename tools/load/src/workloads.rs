//! Running one workload: `--concurrency` workers over the shared
//! connections, a warm-up, then a measured window into an HDR histogram.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::calls::{Clients, Outcome, Rng, Shared, one_call};
use crate::cli::{Args, Workload};
use crate::{BoxError, Res};

/// Latencies from 1 µs to 60 s, 3 significant digits.
fn histogram() -> Res<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

/// What one workload measured.
#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) calls: u64,
    pub(crate) seconds: f64,
    /// Call latencies in µs.
    pub(crate) histogram: Option<Histogram<u64>>,
    pub(crate) expected: BTreeMap<String, u64>,
    /// Count and first message per unexpected code.
    pub(crate) unexpected: BTreeMap<String, (u64, String)>,
    /// Client-side codes over warm-up and measurement, for the cross-check.
    pub(crate) all_codes: BTreeMap<String, u64>,
    pub(crate) exhausted_after: Option<f64>,
    /// (VmRSS, VmHWM) in MiB after the workload.
    pub(crate) rss: Option<(f64, f64)>,
    pub(crate) server_check: String,
}

impl Measured {
    /// Calls per second over the measured window.
    pub(crate) fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn unexpected_total(&self) -> u64 {
        self.unexpected.values().map(|(n, _)| n).sum()
    }

    /// The latency at quantile `q`, in ms.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }

    /// The slowest call, in ms.
    pub(crate) fn max_ms(&self) -> f64 {
        self.histogram
            .as_ref()
            .map_or(0.0, |h| h.max() as f64 / 1000.0)
    }
}

struct WorkerResult {
    histogram: Histogram<u64>,
    calls: u64,
    last_completion: Option<Instant>,
    expected: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, (u64, String)>,
    all_codes: BTreeMap<String, u64>,
    exhausted_at: Option<Instant>,
}

/// One worker: calls one at a time until the window ends or its pool runs out.
async fn run_worker(
    workload: Workload,
    shared: Arc<Shared>,
    channel: Channel,
    worker: usize,
    measure_from: Instant,
    end: Instant,
) -> Result<WorkerResult, BoxError> {
    let mut clients = Clients {
        tokens: TokenServiceClient::new(channel.clone()),
        health: HealthClient::new(channel),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((worker as u64 + 1) * 0x1000_0001));
    let mut result = WorkerResult {
        histogram: histogram()?,
        calls: 0,
        last_completion: None,
        expected: BTreeMap::new(),
        unexpected: BTreeMap::new(),
        all_codes: BTreeMap::new(),
        exhausted_at: None,
    };
    let mut seq = 0u64;
    while Instant::now() < end && !shared.exhausted.load(Ordering::Relaxed) {
        seq += 1;
        let began = Instant::now();
        let outcome = one_call(workload, &shared, &mut clients, &mut rng, worker, seq).await;
        let done = Instant::now();
        let code = match &outcome {
            Outcome::Exhausted => {
                shared.exhausted.store(true, Ordering::Relaxed);
                result.exhausted_at = Some(done);
                break;
            }
            Outcome::Ok => Code::Ok,
            Outcome::Expected(code) | Outcome::Unexpected(code, _) => *code,
        };
        *result.all_codes.entry(format!("{code:?}")).or_default() += 1;
        if done < measure_from || done >= end {
            continue;
        }
        result.calls += 1;
        result.last_completion = Some(done);
        let micros = u64::try_from(done.duration_since(began).as_micros()).unwrap_or(u64::MAX);
        result.histogram.saturating_record(micros.max(1));
        match outcome {
            Outcome::Expected(code) => {
                *result.expected.entry(format!("{code:?}")).or_default() += 1
            }
            Outcome::Unexpected(code, message) => {
                let entry = result
                    .unexpected
                    .entry(format!("{code:?}"))
                    .or_insert((0, message));
                entry.0 += 1;
            }
            Outcome::Ok | Outcome::Exhausted => {}
        }
    }
    Ok(result)
}

/// Runs `workload` for `--warmup` + `--duration` and merges the workers'
/// figures. A single-use pool that runs out ends it early; the rate is then
/// over the time actually measured.
pub(crate) async fn run_workload(
    workload: Workload,
    args: &Args,
    shared: &Arc<Shared>,
    channels: &[Channel],
) -> Res<Measured> {
    shared.cursor.store(0, Ordering::Relaxed);
    shared.exhausted.store(false, Ordering::Relaxed);
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let channel = channels[index % channels.len()].clone();
        tasks.push(tokio::spawn(run_worker(
            workload,
            Arc::clone(shared),
            channel,
            index,
            measure_from,
            end,
        )));
    }
    let mut measured = Measured {
        histogram: Some(histogram()?),
        ..Measured::default()
    };
    let mut last_completion: Option<Instant> = None;
    let mut exhausted_at: Option<Instant> = None;
    for task in tasks {
        let result = task.await??;
        if let Some(histogram) = measured.histogram.as_mut() {
            histogram.add(&result.histogram)?;
        }
        measured.calls += result.calls;
        last_completion = last_completion.max(result.last_completion);
        exhausted_at = match (exhausted_at, result.exhausted_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (code, n) in result.expected {
            *measured.expected.entry(code).or_default() += n;
        }
        for (code, (n, message)) in result.unexpected {
            measured.unexpected.entry(code).or_insert((0, message)).0 += n;
        }
        for (code, n) in result.all_codes {
            *measured.all_codes.entry(code).or_default() += n;
        }
    }
    measured.seconds = args.duration.as_secs_f64();
    if let Some(at) = exhausted_at {
        measured.exhausted_after = Some(at.duration_since(start).as_secs_f64());
        measured.seconds = last_completion
            .map(|last| last.saturating_duration_since(measure_from).as_secs_f64())
            .unwrap_or(0.0);
    }
    Ok(measured)
}
