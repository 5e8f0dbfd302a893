//! Keeping the repository sound: `vst fsck`, `vst gc`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use vst::ReadData;
use vst_cas::{Access, GcMode};

use crate::args::Cli;
use crate::output::out;
use crate::workspace::{find, open, spinner};

/// `vst fsck`.
pub fn fsck(cli: &Cli, read_data: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let bar = spinner(
        if read_data { "checking every object and byte" } else { "checking every object" },
        cli.quiet,
    );
    let report = repo.fsck(if read_data { ReadData::Yes } else { ReadData::No });
    bar.finish_and_clear();
    let report = report?;
    let mut out = out();
    if cli.json {
        let value = json!({
            "clean": report.is_clean(),
            "commits": report.commits,
            "trees": report.trees,
            "blobs": report.blobs,
            "problems": report.problems.iter().map(|p| json!({
                "kind": p.kind.to_string(), "id": p.id.to_string(), "error": p.error.to_string(),
            })).collect::<Vec<_>>(),
            "bad_refs": report.bad_refs.iter().map(|(name, e)| json!({
                "ref": name.to_string(), "error": e.to_string(),
            })).collect::<Vec<_>>(),
            "damaged_packs": report.damaged_packs.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "damaged_records": report.damaged_records.iter().map(|(id, e)| json!({
                "id": id.to_string(), "error": e.to_string(),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")?;
        return Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    for p in &report.problems {
        writeln!(out, "{} {}: {}", p.kind, p.id, p.error)?;
    }
    for (name, e) in &report.bad_refs {
        writeln!(out, "ref {name}: {e}")?;
    }
    for pack in &report.damaged_packs {
        writeln!(out, "pack {pack}: damaged records")?;
    }
    for (id, e) in &report.damaged_records {
        writeln!(out, "record {id}: {e}")?;
    }
    if report.is_clean() {
        if !cli.quiet {
            writeln!(
                out,
                "ok: {} commits, {} trees, {} blobs",
                report.commits, report.trees, report.blobs
            )?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// `vst gc`.
pub fn gc(cli: &Cli, dry_run: bool, grace_hours: u64) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadWrite)?;
    let mode = if dry_run { GcMode::DryRun } else { GcMode::Collect };
    let bar = spinner("collecting garbage", cli.quiet);
    let stats = repo.gc(std::time::Duration::from_secs(grace_hours.saturating_mul(3600)), mode);
    bar.finish_and_clear();
    let stats = stats?;
    if cli.json {
        let value = json!({
            "dry_run": dry_run,
            "records_removed": stats.records_removed,
            "records_kept": stats.records_kept,
            "bytes_before": stats.bytes_before,
            "bytes_after": stats.bytes_after,
        });
        writeln!(out(), "{value}")?;
    } else if !cli.quiet {
        let verb = if dry_run { "would remove" } else { "removed" };
        writeln!(
            out(),
            "{verb} {} records, kept {}; packs {} -> {} bytes",
            stats.records_removed,
            stats.records_kept,
            stats.bytes_before,
            stats.bytes_after
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
