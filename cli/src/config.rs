//! `vst config`: settings in the repository (`.vst/config`) and for the
//! user (`$XDG_CONFIG_HOME/vst/config`, else `~/.config/vst/config`); the
//! repository's win. One `key = value` per line, `#` comments; keys are
//! `section.name` (`user.name`, `user.email`, `snapshot.max-new-file-size`).
//!
//! Who a commit is by comes from here: `--author`, else `$VST_AUTHOR`,
//! else `$VST_AUTHOR_NAME`/`$VST_AUTHOR_EMAIL`, else `user.name`/`user.email`,
//! else the login name (and a hint, once per repository, on how to set it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::args::Cli;
use crate::output::out;

/// `vst config`'s options.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The user's file instead of the repository's.
    #[arg(long)]
    global: bool,
    /// List every setting (both files; the repository's win).
    #[arg(long, short, conflicts_with_all = ["key", "unset"])]
    list: bool,
    /// Remove KEY.
    #[arg(long, requires = "key", conflicts_with = "value")]
    unset: bool,
    /// `section.name`, e.g. user.name.
    key: Option<String>,
    /// Set KEY to this; without it, print KEY's value (exit status 1 if
    /// unset).
    value: Option<String>,
}

/// The repository's file.
pub const REPO_CONFIG: &str = "config";

/// Marks a repository where the identity hint was given.
const HINTED: &str = "identity-hinted";

/// The user's file, if a home is known.
fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vst").join("config"))
}

fn read_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}:{}: want `key = value`", path.display(), n + 1);
        };
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

fn write_file(path: &Path, entries: &[(String, String)]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text: String = entries.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

fn check_key(key: &str) -> Result<()> {
    let ok = key.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok {
        bail!("bad key {key:?}: want section.name (letters, digits, - and _), e.g. user.name");
    }
    Ok(())
}

/// The value of `key`: the repository's file (if `repo_dir`), else the
/// user's.
pub fn get(repo_dir: Option<&Path>, key: &str) -> Result<Option<String>> {
    let files = repo_dir.map(|d| d.join(REPO_CONFIG)).into_iter().chain(user_file());
    for file in files {
        if let Some((_, v)) = read_file(&file)?.into_iter().rev().find(|(k, _)| k == key) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The default of `snapshot.max-new-file-size`.
pub const NEW_FILE_LEN_MAX_DEFAULT: u64 = 100 << 20;

/// The size above which a new file is left out of a commit (and listed by
/// status): `snapshot.max-new-file-size`, in bytes or with a `K`, `M`, `G`
/// or `T` suffix (`KiB`... too, powers of 1024); `0` or `none` for no
/// limit; by default [`NEW_FILE_LEN_MAX_DEFAULT`].
pub fn new_file_len_max(repo_dir: &Path) -> Result<Option<u64>> {
    const KEY: &str = "snapshot.max-new-file-size";
    // A settings file that cannot be read (a user's home that is not
    // this user's) leaves the default: the stricter side.
    let Some(text) = get(Some(repo_dir), KEY).ok().flatten() else {
        return Ok(Some(NEW_FILE_LEN_MAX_DEFAULT));
    };
    let size = parse_size(&text).with_context(|| {
        format!("bad {KEY} {text:?}: want a size such as 100M or 2GiB, or none; fix it with `vst config {KEY} SIZE`")
    })?;
    Ok(size.filter(|&s| s > 0))
}

/// `text` as a size in bytes (`None`: "none").
fn parse_size(text: &str) -> Result<Option<u64>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().context("no number")?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => bail!("unknown unit {other:?}"),
    };
    number.checked_mul(1 << shift).map(Some).context("too large")
}

/// Who a commit is by (see the module docs).
pub fn author(given: Option<String>, repo_dir: &Path) -> String {
    if let Some(given) = given.or_else(|| std::env::var("VST_AUTHOR").ok()) {
        return given;
    }
    let setting = |env: &str, key: &str| {
        std::env::var(env).ok().or_else(|| get(Some(repo_dir), key).ok().flatten())
    };
    let name = setting("VST_AUTHOR_NAME", "user.name");
    let email = setting("VST_AUTHOR_EMAIL", "user.email");
    match (name, email) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (Some(name), None) => name,
        (None, email) => {
            let login = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
            let hinted = repo_dir.join(HINTED);
            if !hinted.exists() {
                eprintln!(
                    "vst: hint: no identity set, so commits say {login:?}; set it once with `vst config --global user.name \"Your Name\"` and `vst config --global user.email you@example.com`"
                );
                let _ = std::fs::write(&hinted, b"");
            }
            match email {
                Some(email) => format!("{login} <{email}>"),
                None => login,
            }
        }
    }
}

/// `vst config`.
pub fn config_cmd(cli: &Cli, args: &ConfigArgs) -> Result<ExitCode> {
    let repo_dir = if args.global {
        None
    } else {
        match crate::workspace::find(cli) {
            Ok(location) => Some(location.repo_dir),
            // Reading works outside a repository (the user's file).
            Err(_) if args.key.is_some() && args.value.is_none() && !args.unset => None,
            Err(_) if args.list => None,
            Err(e) => {
                return Err(e.context("not in a repository: use --global for the user's settings"));
            }
        }
    };
    let file = match &repo_dir {
        Some(dir) => dir.join(REPO_CONFIG),
        None => {
            user_file().context("no home directory ($HOME or $XDG_CONFIG_HOME) for --global")?
        }
    };
    if args.list {
        let mut all: Vec<(String, String)> = Vec::new();
        let files = user_file().into_iter().chain(repo_dir.map(|d| d.join(REPO_CONFIG)));
        for f in files {
            for (k, v) in read_file(&f)? {
                all.retain(|(key, _)| *key != k);
                all.push((k, v));
            }
        }
        all.sort();
        let mut out = out();
        if cli.json {
            let map: serde_json::Map<String, serde_json::Value> =
                all.into_iter().map(|(k, v)| (k, json!(v))).collect();
            writeln!(out, "{}", serde_json::Value::Object(map))?;
        } else {
            for (k, v) in all {
                writeln!(out, "{k} = {v}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(key) = &args.key else { bail!("name a KEY (or --list)") };
    check_key(key)?;
    let mut entries = read_file(&file)?;
    if args.unset {
        let before = entries.len();
        entries.retain(|(k, _)| k != key);
        write_file(&file, &entries)?;
        if cli.json {
            writeln!(out(), "{}", json!({ "key": key, "removed": before != entries.len() }))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match &args.value {
        Some(value) => {
            if value.contains('\n') {
                bail!("a value is one line");
            }
            entries.retain(|(k, _)| k != key);
            entries.push((key.clone(), value.clone()));
            write_file(&file, &entries)?;
            if cli.json {
                writeln!(out(), "{}", json!({ "key": key, "value": value }))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let value = if args.global {
                read_file(&file)?.into_iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
            } else {
                get(repo_dir.as_deref(), key)?
            };
            if cli.json {
                writeln!(out(), "{}", json!({ "key": key, "value": value }))?;
            } else if let Some(v) = &value {
                writeln!(out(), "{v}")?;
            }
            Ok(if value.is_some() || cli.json { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
