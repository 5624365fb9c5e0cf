//! Smoke test of every scenario at a tiny size against the embedded system
//! started in this process. It asserts the exact counts of the results,
//! never timings: the numbers that matter come from BENCHMARKS.md runs.

mod scenarios;
mod support;
