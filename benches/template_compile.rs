//! Template compilation time against the number of placeholders: compiling must stay linear
//! (issue 6, item 9: 5k placeholders took 0.37 s and 20k took 6.6 s before).
//!
//! Run: `cargo bench --bench template_compile` (env `SIZES`, default `5000,20000,80000`;
//! `RUNS`, default 3). Prints, per shape and size, the best of `RUNS` inspections (what
//! `validate` does) and compiles (what a run does), and the compile time per placeholder: a
//! linear compiler keeps that figure flat as the size grows.

// A benchmark run by hand reports on stdout; the crate's ban on `println!` is for commands.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use switchyard::mapping::{CompiledTemplate, inspect};

fn main() {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5_000, 20_000, 80_000]);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("| shape | placeholders | bytes | inspect | compile | compile per placeholder |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (shape, build) in SHAPES {
        for &n in &sizes {
            let source = build(n);
            let inspect_time = best_of(runs, || {
                let _ = inspect(&source);
            });
            let compile_time = best_of(runs, || {
                let _ = CompiledTemplate::compile(&source);
            });
            println!(
                "| {shape} | {n} | {} | {:.3} s | {:.3} s | {:.2} µs |",
                source.len(),
                inspect_time.as_secs_f64(),
                compile_time.as_secs_f64(),
                compile_time.as_secs_f64() * 1e6 / n as f64
            );
        }
    }
}

type Shape = (&'static str, fn(usize) -> String);

/// Text with one field again and again; with distinct fields (one per line); with helper
/// calls and subexpressions.
const SHAPES: &[Shape] = &[
    ("same field", |n| "{{sku}} ".repeat(n)),
    ("distinct fields", |n| {
        (0..n).map(|i| format!("{{{{f{i}}}}}\n")).collect()
    }),
    ("helper calls", |n| {
        "{{lower (concat sku \"-\" lines.[0].id)}} ".repeat(n)
    }),
];

fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
