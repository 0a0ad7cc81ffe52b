//! The end-to-end matrix: every configuration run in interleaved rounds, with its table and
//! JSON lines.
//!
//! In each run a consumer process starts first (declares its queue, starts consuming, says
//! READY), then the publisher publishes N events from this process. Both run at once, each
//! with its own connection. The end-to-end rate is N over the time from the first publish to
//! the handling of the last event (the publisher's and the consumer's wall clocks are the
//! same machine's); the publish rate is N over the publisher's own time, confirms included.
//!
//! Configurations are named `<side>-p<prefetch>-<publisher>`. The headline is
//! [`LIB_DEFAULT`]: the subscriber's default settings (prefetch 100), confirms on, and
//! `publish_all` of batches of 10,000 with the publisher's default confirm window (1,000 in
//! flight): the library's pipelined confirms against the [`BASELINE`] raw loop's lockstep.
//! `lib-p100-batch100` is like for like (100 per call, lockstep): the difference there is the
//! library's own cost.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use pubsub_amqp::AmqpConfig;
use pubsub_testkit::Names;
use serde_json::json;

use crate::admin::Admin;
use crate::cli::{ConsumeArgs, Options, Side};
use crate::consumer::ConsumerProcess;
use crate::library::{self, LibPublish};
use crate::raw::{self, RawConfirms};
use crate::report::{self, Stat};
use crate::sides::{Published, Target};
use crate::workload;

/// The raw loop every ratio is measured against (same round).
pub(crate) const BASELINE: &str = "raw-p100-confirm100";

/// The library at its default settings, confirms on: the headline configuration.
pub(crate) const LIB_DEFAULT: &str = "lib-default";

/// How a configuration publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publisher {
    /// The raw amiquip loop.
    Raw(RawConfirms),
    /// `EventPublisher`.
    Lib(LibPublish),
}

impl Publisher {
    fn side(self) -> Side {
        match self {
            Publisher::Raw(_) => Side::Raw,
            Publisher::Lib(_) => Side::Lib,
        }
    }

    fn describe(self) -> String {
        match self {
            Publisher::Raw(RawConfirms::Off) => "no confirms".to_owned(),
            Publisher::Raw(RawConfirms::Every(n)) => format!("confirms every {n}, lockstep"),
            Publisher::Raw(RawConfirms::Each) => "confirm each, synchronous".to_owned(),
            Publisher::Lib(LibPublish::Single) => "publish(), confirm each".to_owned(),
            Publisher::Lib(LibPublish::Batch(n)) if n > 1_000 => {
                format!("publish_all x{n}, window 1000")
            }
            Publisher::Lib(LibPublish::Batch(n)) => format!("publish_all x{n}, pipelined"),
            Publisher::Lib(LibPublish::Unconfirmed(n)) => {
                format!("publish_all x{n}, confirms off")
            }
        }
    }

    /// Publishes `n` events to `exchange`.
    fn publish(self, config: &AmqpConfig, exchange: &str, n: u64) -> Result<Published> {
        match self {
            Publisher::Raw(confirms) => raw::publish(config, exchange, n, confirms, None),
            Publisher::Lib(mode) => library::publish(config, exchange, n, mode, None),
        }
    }
}

/// One configuration of the matrix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Its name in the table and the JSON lines.
    pub(crate) name: &'static str,
    /// The consumer's prefetch; `None` is the subscriber's default (100).
    pub(crate) prefetch: Option<u16>,
    /// How it publishes.
    pub(crate) publisher: Publisher,
    /// Events per run in the full benchmark.
    pub(crate) messages: u64,
    /// Events per run with `--quick`.
    pub(crate) quick_messages: u64,
}

impl Config {
    pub(crate) fn side(&self) -> Side {
        self.publisher.side()
    }

    /// Events per run under `options`: the full or `--quick` count, times `--scale`, at
    /// least 30.
    pub(crate) fn events(&self, options: &Options) -> u64 {
        let n = if options.quick {
            self.quick_messages
        } else {
            self.messages
        };
        ((n as f64 * options.scale).round() as u64).max(30)
    }

    /// The library's default configuration ([`LIB_DEFAULT`]).
    pub(crate) fn lib_default() -> Result<&'static Config> {
        CONFIGS
            .iter()
            .find(|c| c.name == LIB_DEFAULT)
            .context("no lib-default configuration")
    }

    fn prefetch_label(&self) -> String {
        match self.prefetch {
            Some(p) => p.to_string(),
            None => "100 (default)".to_owned(),
        }
    }
}

/// The matrix, in the order each round runs it: pairs that are compared run next to each
/// other.
pub(crate) const CONFIGS: &[Config] = &[
    Config {
        name: BASELINE,
        prefetch: Some(100),
        publisher: Publisher::Raw(RawConfirms::Every(100)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: LIB_DEFAULT,
        prefetch: None,
        publisher: Publisher::Lib(LibPublish::Batch(10_000)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "lib-p100-batch100",
        prefetch: None,
        publisher: Publisher::Lib(LibPublish::Batch(100)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "lib-p100-batch1000",
        prefetch: None,
        publisher: Publisher::Lib(LibPublish::Batch(1_000)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "lib-p500-batch1000",
        prefetch: Some(500),
        publisher: Publisher::Lib(LibPublish::Batch(1_000)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "raw-p100-noconfirm",
        prefetch: Some(100),
        publisher: Publisher::Raw(RawConfirms::Off),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "lib-p100-noconfirm",
        prefetch: None,
        publisher: Publisher::Lib(LibPublish::Unconfirmed(100)),
        messages: 30_000,
        quick_messages: 4_000,
    },
    Config {
        name: "raw-p1-noconfirm",
        prefetch: Some(1),
        publisher: Publisher::Raw(RawConfirms::Off),
        messages: 10_000,
        quick_messages: 1_500,
    },
    Config {
        name: "lib-p1-noconfirm",
        prefetch: Some(1),
        publisher: Publisher::Lib(LibPublish::Unconfirmed(100)),
        messages: 10_000,
        quick_messages: 1_500,
    },
    Config {
        name: "lib-p1-batch100",
        prefetch: Some(1),
        publisher: Publisher::Lib(LibPublish::Batch(100)),
        messages: 6_000,
        quick_messages: 1_000,
    },
    Config {
        name: "raw-p100-confirm1",
        prefetch: Some(100),
        publisher: Publisher::Raw(RawConfirms::Each),
        messages: 2_000,
        quick_messages: 400,
    },
    Config {
        name: "lib-p100-single",
        prefetch: None,
        publisher: Publisher::Lib(LibPublish::Single),
        messages: 2_000,
        quick_messages: 400,
    },
];

/// One run of one configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    publish_rate: f64,
    pub(crate) e2e_rate: f64,
    hwm_kb: u64,
    /// CPU time of the publishing process per event, microseconds.
    pub(crate) publisher_cpu_us: f64,
    /// CPU time of the consumer process per event, microseconds.
    pub(crate) consumer_cpu_us: f64,
    /// Ack frames the consumer sent per event (from the bytes it sent), NaN if unknown.
    acks_per_event: f64,
}

/// Two series of runs interleaved round by round (a baseline and a variant): each one's
/// end-to-end rate, and the variant's rate over the baseline's of the same round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paired {
    pub(crate) base: Stat,
    pub(crate) other: Stat,
    pub(crate) ratio: Stat,
}

impl Paired {
    /// The rates and per-round ratios of `other` against `base`.
    ///
    /// # Errors
    ///
    /// When no run finished.
    pub(crate) fn of(base: &[Run], other: &[Run]) -> Result<Paired> {
        let rate = |runs: &[Run]| Stat::of(&runs.iter().map(|r| r.e2e_rate).collect::<Vec<_>>());
        let (Some(base_rate), Some(other_rate)) = (rate(base), rate(other)) else {
            bail!("no run finished");
        };
        let ratios: Vec<f64> = base
            .iter()
            .zip(other)
            .map(|(b, o)| o.e2e_rate / b.e2e_rate)
            .collect();
        Ok(Paired {
            base: base_rate,
            other: other_rate,
            ratio: Stat::of(&ratios).context("no ratio")?,
        })
    }
}

/// A configuration's results over the rounds.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) config: Config,
    pub(crate) messages: u64,
    pub(crate) publish: Stat,
    pub(crate) e2e: Stat,
    pub(crate) ratio: Option<Stat>,
    pub(crate) hwm_kb: Stat,
    pub(crate) publisher_cpu_us: Stat,
    pub(crate) consumer_cpu_us: Stat,
    pub(crate) acks_per_event: Option<Stat>,
}

/// Runs the matrix, interleaved round by round, and prints its table and JSON lines.
pub(crate) fn matrix(admin: &mut Admin, options: &Options) -> Result<Vec<Summary>> {
    let configs: Vec<Config> = CONFIGS
        .iter()
        .filter(|c| {
            options
                .only
                .as_ref()
                .is_none_or(|o| o.split(',').any(|part| c.name.contains(part.trim())))
        })
        .copied()
        .collect();
    if configs.is_empty() {
        bail!("--only matches no configuration");
    }
    let count = |c: &Config| c.events(options);

    // A short unrecorded run first: connections, the broker's queue processes and the page
    // cache warm up on it rather than on the first configuration measured.
    eprintln!("warm-up...");
    run_once(admin, &CONFIGS[0], 1_000, "warmup")?;

    let rounds = options.rounds();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 1..=rounds {
        let mut this_round: Vec<Option<Run>> = vec![None; configs.len()];
        // Every other round runs the matrix backwards, so that no configuration always
        // follows the same one (the broker still cleans up after the previous run).
        let mut order: Vec<usize> = (0..configs.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for k in order {
            let c = &configs[k];
            let n = count(c);
            eprint!(
                "round {round}/{}: {:<20} {:>6} events ... ",
                rounds, c.name, n
            );
            let run = run_once(admin, c, n, &format!("{}.r{round}", c.name))?;
            eprintln!(
                "publish {:>7} msg/s, end-to-end {:>7} msg/s, CPU us/event {:.1} + {:.1}, acks/event {:.2}, consumer peak RSS {} kB",
                report::thousands(run.publish_rate),
                report::thousands(run.e2e_rate),
                run.publisher_cpu_us,
                run.consumer_cpu_us,
                run.acks_per_event,
                run.hwm_kb
            );
            runs[k].push(run);
            this_round[k] = Some(run);
        }
        let base = configs
            .iter()
            .position(|c| c.name == BASELINE)
            .and_then(|k| this_round[k]);
        if let Some(base) = base {
            for (k, run) in this_round.iter().enumerate() {
                if let Some(run) = run {
                    ratios[k].push(run.e2e_rate / base.e2e_rate);
                }
            }
        }
    }

    let summaries: Vec<Summary> = configs
        .iter()
        .zip(&runs)
        .zip(&ratios)
        .filter_map(|((c, runs), ratios)| {
            let field = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
            Some(Summary {
                config: *c,
                messages: count(c),
                publish: Stat::of(&field(|r| r.publish_rate))?,
                e2e: Stat::of(&field(|r| r.e2e_rate))?,
                ratio: Stat::of(ratios),
                hwm_kb: Stat::of(&field(|r| r.hwm_kb as f64))?,
                publisher_cpu_us: Stat::of(&field(|r| r.publisher_cpu_us))?,
                consumer_cpu_us: Stat::of(&field(|r| r.consumer_cpu_us))?,
                acks_per_event: Stat::of(&field(|r| r.acks_per_event)),
            })
        })
        .collect();
    print_matrix(&summaries, rounds);
    Ok(summaries)
}

/// One run: a consumer process, the publisher here, then the cleanup.
fn run_once(admin: &mut Admin, c: &Config, n: u64, tag: &str) -> Result<Run> {
    run_once_on(admin, c, n, tag, &Target::default())
}

/// One run of `c` on the broker of `admin`, with its queues deleted afterwards.
pub(crate) fn run_once_on(
    admin: &mut Admin,
    c: &Config,
    n: u64,
    tag: &str,
    target: &Target,
) -> Result<Run> {
    let names = admin.names(tag)?;
    let result = run_with(admin.config(), &names, c, n, target);
    admin.delete(&names);
    result
}

fn run_with(
    config: &AmqpConfig,
    names: &Names,
    c: &Config,
    n: u64,
    target: &Target,
) -> Result<Run> {
    let side = c.side();
    let args = ConsumeArgs {
        side,
        exchange: names.exchange.clone(),
        queue: names.queue.clone(),
        prefetch: c.prefetch,
        count: n,
        latency: false,
        rss_at: Vec::new(),
        wait_go: false,
        quorum: target.quorum,
    };
    let consumer = ConsumerProcess::start_on(&args, target)?;
    let cpu_before = workload::cpu_ticks().unwrap_or(0);
    crate::tracing_pipeline::publishing(target.tracing);
    let published = c.publisher.publish(config, &names.exchange, n);
    crate::tracing_pipeline::publishing(false);
    let published = published?;
    let publisher_ticks = workload::cpu_ticks()
        .unwrap_or(0)
        .saturating_sub(cpu_before);
    let result = consumer.finish(Duration::from_secs(60 + n / 500))?;
    let expected = workload::expected_dispatch(n);
    if result.handled != n || (result.order_star, result.star_created) != expected {
        bail!(
            "{}: the consumer handled {} events, order.* {} and *.created {}; expected {n}, {} and {} (subscriber: {})",
            c.name,
            result.handled,
            result.order_star,
            result.star_created,
            expected.0,
            expected.1,
            result.stats.as_deref().unwrap_or("raw loop")
        );
    }
    let e2e_seconds = result.last_ns.saturating_sub(published.start_ns) as f64 / 1e9;
    Ok(Run {
        publish_rate: n as f64 / published.seconds,
        e2e_rate: n as f64 / e2e_seconds.max(1e-9),
        hwm_kb: result.hwm_kb,
        publisher_cpu_us: publisher_ticks as f64 * 1e6
            / workload::TICKS_PER_SECOND as f64
            / n as f64,
        consumer_cpu_us: result.cpu_ms as f64 * 1e3 / n as f64,
        acks_per_event: result
            .ack_frames
            .map_or(f64::NAN, |acks| acks as f64 / n as f64),
    })
}

fn print_matrix(summaries: &[Summary], rounds: usize) {
    println!(
        "\n## End-to-end throughput (median [min-max] of {rounds} interleaved rounds; ratio to `{BASELINE}` of the same round)\n"
    );
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            let mut name = s.config.name.to_owned();
            if name == LIB_DEFAULT {
                name.push_str(" (default settings, confirms on)");
            } else if name == BASELINE {
                name.push_str(" (baseline)");
            }
            vec![
                name,
                s.config.prefetch_label(),
                s.config.publisher.describe(),
                report::thousands(s.messages as f64),
                report::thousands(s.publish.median),
                report::rate_range(&s.e2e),
                s.ratio.as_ref().map_or("-".to_owned(), report::ratio_range),
                format!(
                    "{:.1} / {:.1}",
                    s.publisher_cpu_us.median, s.consumer_cpu_us.median
                ),
                s.acks_per_event
                    .map_or("-".to_owned(), |a| format!("{:.2}", a.median)),
                report::thousands(s.hwm_kb.median),
            ]
        })
        .collect();
    report::print_table(
        &[
            "config",
            "prefetch",
            "publisher",
            "events",
            "publish msg/s",
            "e2e msg/s median [min-max]",
            "ratio vs raw",
            "CPU us/event pub / cons",
            "acks/event",
            "consumer peak RSS kB",
        ],
        &rows,
    );
    println!();
    for s in summaries {
        let line = report::json_line(&[
            ("config", json!(s.config.name)),
            (
                "publish_msgs_per_s",
                json!(report::round(s.publish.median, 0)),
            ),
            ("e2e_msgs_per_s", json!(report::round(s.e2e.median, 0))),
            (
                "ratio_vs_raw",
                json!(s.ratio.map(|r| report::round(r.median, 3))),
            ),
            ("consumer_rss_kb", json!(s.hwm_kb.median.round() as u64)),
            ("e2e_min", json!(report::round(s.e2e.min, 0))),
            ("e2e_max", json!(report::round(s.e2e.max, 0))),
            ("ratio_min", json!(s.ratio.map(|r| report::round(r.min, 3)))),
            ("ratio_max", json!(s.ratio.map(|r| report::round(r.max, 3)))),
            (
                "publisher_cpu_us_per_event",
                json!(report::round(s.publisher_cpu_us.median, 2)),
            ),
            (
                "consumer_cpu_us_per_event",
                json!(report::round(s.consumer_cpu_us.median, 2)),
            ),
            (
                "acks_per_event",
                json!(s.acks_per_event.map(|a| report::round(a.median, 3))),
            ),
            ("side", json!(s.config.side().as_str())),
            ("prefetch", json!(s.config.prefetch.unwrap_or(100))),
            ("publisher", json!(s.config.publisher.describe())),
            ("events", json!(s.messages)),
            ("rounds", json!(rounds)),
        ]);
        println!("{line}");
    }
}
