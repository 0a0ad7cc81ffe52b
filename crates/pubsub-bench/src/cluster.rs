//! `--cluster`: the library's default configuration on the 3-node cluster of `just cluster`
//! with quorum queues (replicated on three nodes), beside one node with classic queues, in
//! one run, interleaved round by round.

use anyhow::{Context, Result};
use pubsub_amqp::AmqpConfig;
use serde_json::json;

use crate::admin::{self, Admin};
use crate::cli::Options;
use crate::e2e::{run_once_on, Config, Paired, Run, LIB_DEFAULT};
use crate::report::{self, Stat};
use crate::sides::Target;

/// The cluster `scripts/cluster.sh` starts, unless `PUBSUB_CLUSTER_URL` names another.
const DEFAULT_CLUSTER_URL: &str =
    "amqp://guest:guest@127.0.0.1:5673,127.0.0.1:5674,127.0.0.1:5675/%2f";

/// Runs the comparison and prints its table, its JSON lines and the ratio.
pub(crate) fn run(options: &Options) -> Result<()> {
    let single = admin::broker_config()?;
    let url =
        std::env::var("PUBSUB_CLUSTER_URL").unwrap_or_else(|_| DEFAULT_CLUSTER_URL.to_owned());
    let cluster = AmqpConfig::from_url(&url)?.with_connection_attempts(1);
    let mut single_admin = Admin::open(&single)?;
    let mut cluster_admin = Admin::open(&cluster)
        .context("the cluster does not answer: start it with `just cluster`")?;
    let config = Config::lib_default()?;
    let n = config.events(options);
    let rounds = options.rounds();
    let on_cluster = Target {
        url: Some(url.clone()),
        quorum: true,
        tracing: false,
    };
    println!(
        "# pubsub-bench --cluster: {} against {}",
        LIB_DEFAULT,
        cluster.address()
    );
    let mut singles: Vec<Run> = Vec::new();
    let mut clusters: Vec<Run> = Vec::new();
    for round in 1..=rounds {
        for first in [round % 2 == 0, round % 2 == 1] {
            let (admin, target, runs, label) = if first {
                (
                    &mut single_admin,
                    Target::default(),
                    &mut singles,
                    "one node, classic",
                )
            } else {
                (
                    &mut cluster_admin,
                    on_cluster.clone(),
                    &mut clusters,
                    "3 nodes, quorum",
                )
            };
            eprint!("round {round}/{rounds}: {label:<18} {n:>6} events ... ");
            let run = run_once_on(admin, config, n, &format!("cluster.r{round}"), &target)?;
            eprintln!(
                "end-to-end {:>7} msg/s, consumer CPU us/event {:.1}",
                report::thousands(run.e2e_rate),
                run.consumer_cpu_us
            );
            runs.push(run);
        }
    }
    single_admin.close()?;
    cluster_admin.close()?;

    let stat = |runs: &[Run], f: fn(&Run) -> f64| Stat::of(&runs.iter().map(f).collect::<Vec<_>>());
    let Paired {
        base: single_rate,
        other: cluster_rate,
        ratio,
    } = Paired::of(&singles, &clusters)?;
    println!(
        "\n## The cluster beside one node ({LIB_DEFAULT}, median [min-max] of {rounds} interleaved rounds)\n"
    );
    let row = |what: &str, rate: Stat, cpu: Option<Stat>, ratio: String| {
        vec![
            what.to_owned(),
            format!(
                "{} [{}-{}]",
                report::thousands(rate.median),
                report::thousands(rate.min),
                report::thousands(rate.max)
            ),
            ratio,
            cpu.map_or("-".to_owned(), |c| format!("{:.1}", c.median)),
        ]
    };
    report::print_table(
        &[
            "broker and queues",
            "e2e msg/s",
            "ratio to one node",
            "consumer CPU µs/event",
        ],
        &[
            row(
                "one node, classic queues",
                single_rate,
                stat(&singles, |r| r.consumer_cpu_us),
                "1.00x".to_owned(),
            ),
            row(
                "3-node cluster, quorum queues (queue, delay queues, DLQ)",
                cluster_rate,
                stat(&clusters, |r| r.consumer_cpu_us),
                format!("{:.2}x [{:.2}-{:.2}]", ratio.median, ratio.min, ratio.max),
            ),
        ],
    );
    println!();
    println!(
        "{}",
        report::bench_line(
            "cluster_vs_single",
            json!({
                "events": n,
                "rounds": rounds,
                "single_classic_msgs_per_s": single_rate.median,
                "cluster_quorum_msgs_per_s": cluster_rate.median,
                "ratio": report::round(ratio.median, 3),
            })
        )
    );
    Ok(())
}
