//! `gatemesh demo` works as the README promises: run the real binary, read
//! the gateway URL, the API key and the `curl` line it prints, send that
//! request, and download the image from the gateway itself.
//!
//! The demo spawns `gatemesh-emulator` from the directory of the `gatemesh`
//! binary; a workspace build (or `cargo build -p simulations --bin
//! gatemesh-emulator` with the same target directory) puts it there.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the demo may take to print its banner (debug build, busy machine).
const BANNER_DEADLINE: Duration = Duration::from_secs(60);
/// How long `gatemesh` may take to exit after SIGTERM (its grace is 5 s).
const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// Poll interval of exit waits.
const POLL: Duration = Duration::from_millis(20);

/// The demo process, in its own process group (the emulator it spawns joins
/// that group). Dropping it terminates the whole group, even on panic.
struct DemoProcess {
    child: Child,
    pgid: u32,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl DemoProcess {
    fn spawn(gatemesh: &Path, args: &[String]) -> Self {
        let mut child = Command::new(gatemesh)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", gatemesh.display()));
        let pgid = child.id();
        let (lines_tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = err.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Self {
            child,
            pgid,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reads stdout until the banner is complete.
    fn banner(&mut self) -> Banner {
        let deadline = Instant::now() + BANNER_DEADLINE;
        let mut seen = Vec::new();
        let mut banner = Banner::default();
        while banner.gateway.is_none() || banner.api_key.is_none() || banner.curl.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    banner.read(&line);
                    seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the demo printed no complete banner within {BANNER_DEADLINE:?}.\nstdout:\n{}\nstderr:\n{}",
                    seen.join("\n"),
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the demo exited ({:?}) before printing its banner.\nstdout:\n{}\nstderr:\n{}",
                    self.child.try_wait(),
                    seen.join("\n"),
                    self.stderr()
                ),
            }
        }
        banner
    }

    /// Sends `signal` to every process of the group; false if none is left.
    fn signal_group(&self, signal: &str) -> bool {
        Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits for the `gatemesh` process to exit, up to `deadline`.
    fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        poll_until(deadline, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// Waits until no process of the group is left, up to `deadline`.
    fn wait_group_gone(&self, deadline: Duration) -> bool {
        poll_until(deadline, || !self.signal_group("0"))
    }
}

/// Checks `done` every [`POLL`] until it holds (true) or `deadline` has passed
/// (false). Blocks the thread: call it inside `block_in_place`.
fn poll_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group("TERM");
            if self.wait_exit(EXIT_DEADLINE).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Whatever is left of the group (an orphaned emulator) goes too.
        self.signal_group("KILL");
    }
}

/// What the demo printed.
#[derive(Debug, Default)]
struct Banner {
    gateway: Option<String>,
    api_key: Option<String>,
    curl: Option<String>,
}

impl Banner {
    /// Reads one stdout line. The first gateway line wins (a multi-node
    /// demo prints one per node; its curl line uses the first).
    fn read(&mut self, line: &str) {
        let value_after = |label: &str| {
            line.split_once(label)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        if let Some(url) = value_after("gateway (HTTPS, self-signed):") {
            self.gateway.get_or_insert(url);
        } else if let Some(key) = value_after("API key:") {
            self.api_key = Some(key);
        } else if line.trim_start().starts_with("curl ") && line.contains("/text-to-image") {
            self.curl = Some(line.trim().to_owned());
        }
    }
}

/// A `curl` command line split like a POSIX shell splits single-quoted words.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    if in_word {
        words.push(word);
    }
    words
}

/// The request a `curl -sk URL -H … -d …` line makes.
#[derive(Debug)]
struct CurlRequest {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn parse_curl(line: &str) -> CurlRequest {
    let words = shell_words(line);
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{line}");
    let mut url = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut rest = words.iter().skip(1);
    while let Some(word) = rest.next() {
        match word.as_str() {
            "-H" | "--header" => {
                let header = rest.next().expect("-H takes a value");
                let (name, value) = header.split_once(':').expect("header is Name: value");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" | "--data" | "--data-raw" => {
                body = Some(rest.next().expect("-d takes a value").clone())
            }
            flag if flag.starts_with('-') => {
                assert!(
                    flag == "-sk" || flag == "-s" || flag == "-k",
                    "unexpected curl flag {flag} in {line}"
                );
            }
            other => url = Some(other.to_owned()),
        }
    }
    CurlRequest {
        url: url.expect("the curl line has a URL"),
        headers,
        body,
    }
}

/// The demo's command line: `demo --listen 127.0.0.1:0 --orchestrators 3`
/// (the single-gateway demo of the README). The multi-region lab has other
/// flags (`--port`, `--admin-port`, `--dir`); `demo --help` tells which one
/// this binary is, and the lab gets free ports and a temp dir.
fn demo_args(gatemesh: &Path, dir: &Path) -> Vec<String> {
    let help = Command::new(gatemesh)
        .args(["demo", "--help"])
        .output()
        .expect("gatemesh demo --help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut args: Vec<String> = vec!["demo".into()];
    if help.contains("--listen") {
        args.extend(["--listen", "127.0.0.1:0"].map(String::from));
    }
    if help.contains("--orchestrators ") || help.contains("--orchestrators <") {
        args.extend(["--orchestrators", "3"].map(String::from));
    }
    if help.contains("--port") {
        args.extend(["--port", "0"].map(String::from));
    }
    if help.contains("--admin-port") {
        args.extend(["--admin-port", "0"].map(String::from));
    }
    if help.contains("--dir") {
        args.extend(["--dir".to_owned(), dir.display().to_string()]);
    }
    args
}

fn emulator_path(gatemesh: &Path) -> PathBuf {
    let path = gatemesh.with_file_name("gatemesh-emulator");
    assert!(
        path.is_file(),
        "{} is missing: the demo needs the orchestrator emulator next to the gatemesh binary. \
         Build it first with `cargo build -p simulations --bin gatemesh-emulator` \
         (same CARGO_TARGET_DIR), or build the whole workspace.",
        path.display()
    );
    path
}

fn check_png(bytes: &[u8]) {
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the downloaded image has no PNG signature: {:?}",
        &bytes[..bytes.len().min(16)]
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("the PNG header decodes");
    let size = reader.output_buffer_size().expect("PNG buffer size");
    let mut buffer = vec![0; size];
    let frame = reader
        .next_frame(&mut buffer)
        .expect("the PNG frame decodes");
    assert!(frame.width > 0 && frame.height > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_a_working_curl_line_and_serves_the_image() {
    let gatemesh = PathBuf::from(env!("CARGO_BIN_EXE_gatemesh"));
    emulator_path(&gatemesh);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = tempfile::tempdir().expect("a temp dir");
    let args = demo_args(&gatemesh, dir.path());
    let mut demo = DemoProcess::spawn(&gatemesh, &args);
    let banner = tokio::task::block_in_place(|| demo.banner());
    let gateway = banner.gateway.clone().expect("gateway URL");
    let api_key = banner.api_key.clone().expect("API key");
    let curl = parse_curl(banner.curl.as_deref().expect("curl line"));
    assert!(
        gateway.starts_with("https://127.") && !gateway.ends_with(":0"),
        "gateway URL {gateway:?} is not a bound loopback address"
    );
    assert_eq!(curl.url, format!("{gateway}/text-to-image"), "{banner:?}");
    assert!(
        curl.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("authorization")
                && *v == format!("Bearer {api_key}")),
        "the curl line does not carry the printed key: {curl:?}"
    );

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut request = client.post(&curl.url);
    for (name, value) in &curl.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &curl.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.expect("the curl request is answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "body: {text}\nstderr:\n{}", demo.stderr());
    let body: Value = serde_json::from_str(&text).expect("the answer is JSON");
    let object = body.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["images"], "{body}");
    let images = body["images"].as_array().expect("images is an array");
    assert_eq!(images.len(), 1, "{body}");
    let image = images[0].as_object().expect("image is an object");
    let mut keys: Vec<&str> = image.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["nsfw", "seed", "url"], "{body}");
    assert!(image["seed"].is_u64(), "{body}");
    assert_eq!(image["nsfw"], false, "{body}");
    let url = image["url"].as_str().expect("url is a string");
    assert!(
        url.starts_with(&format!("{gateway}/media/")),
        "the image URL {url} is not served by the gateway {gateway}"
    );

    let download = client.get(url).send().await.expect("the image downloads");
    assert_eq!(download.status(), 200);
    check_png(&download.bytes().await.expect("image bytes"));

    // Stop it like Ctrl-C / systemd would: SIGTERM to gatemesh alone; it must
    // exit and take its emulator with it.
    let pid = demo.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "could not send SIGTERM to gatemesh");
    let exit = tokio::task::block_in_place(|| demo.wait_exit(EXIT_DEADLINE));
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "gatemesh did not exit within {EXIT_DEADLINE:?} of SIGTERM\nstderr:\n{}",
            demo.stderr()
        )
    });
    assert!(
        exit.success(),
        "gatemesh exited with {exit}\nstderr:\n{}",
        demo.stderr()
    );
    let gone = tokio::task::block_in_place(|| demo.wait_group_gone(EXIT_DEADLINE));
    assert!(
        gone,
        "gatemesh exited but its emulator process is still running (orphaned)"
    );

    // Logs go through a queue to a writer thread: the line logged last,
    // after the nodes stopped, must still reach stderr before the exit. And
    // stderr is a pipe here, so no terminal colour codes.
    tokio::task::block_in_place(|| {
        poll_until(EXIT_DEADLINE, || demo.stderr().contains("demo stopped"))
    });
    let stderr = demo.stderr();
    assert!(
        stderr.contains("demo stopped"),
        "the last log line was lost at exit\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("job request"),
        "the served job has no access-log line\nstderr:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "log lines to a pipe carry terminal escape codes\nstderr:\n{stderr}"
    );
}

#[test]
fn curl_lines_split_like_a_shell() {
    let curl = parse_curl(
        "curl -sk https://127.0.0.1:1/text-to-image -H 'Authorization: Bearer k' -H 'Content-Type: application/json' -d '{\"prompt\":\"a b\"}'",
    );
    assert_eq!(curl.url, "https://127.0.0.1:1/text-to-image");
    assert_eq!(curl.headers.len(), 2);
    assert_eq!(curl.headers[0], ("Authorization".into(), "Bearer k".into()));
    assert_eq!(curl.body.as_deref(), Some("{\"prompt\":\"a b\"}"));
}
