//! Test harness: a moto server per test, a recording proxy in front of it, and a runner for
//! the real `wsctl` binary.
//!
//! The proxy sees exactly the HTTP requests wsctl sends, so "no mutating call" and "killed after
//! the k-th mutating call" are measured from outside the program under test.

pub mod aws;
pub mod connections;
pub mod dev;
pub mod inventory;
pub mod proxy;
pub mod pubsub;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// Sends `child` a Ctrl-C (SIGINT) and returns how it exited; a child still running `within`
/// later is killed and fails the test, rather than hanging the suite.
pub fn ctrl_c(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {within:?} after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A store write's deadline far enough away that only its attempts' count bounds its retries.
pub fn no_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `wsctl` binary, built (or found fresh) once per test run. `cargo test` builds a
/// package's binaries only for that package's own integration tests, so build it here, with
/// the same package selection as `cargo test --workspace` so no dependency is rebuilt.
pub fn wsctl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        // Benchmarks run from target/release: measure a release wsctl there.
        let release = dir.ends_with("release");
        let status = Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--quiet"])
            .args(release.then_some("--release"))
            .current_dir(root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building wsctl failed");
        dir.join("wsctl")
    })
    .clone()
}

/// The build's target directory (`CARGO_TARGET_DIR` or the repository's `target/`), as the
/// running test binary sits in its `<profile>/deps`: where tests leave files for people to look
/// at (screenshots, reports).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<binary>")
        .to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Waits (up to 30 s) until a server that was just started accepts on loopback `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A moto server on a free loopback port, stopped when dropped (and, through the parent-death
/// signal, when the test process dies).
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS's managed policies exist in every account; moto has them only when asked.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("moto_server is not installed: pip install 'moto[server]'");
        let moto = Moto { port, child };
        wait_for_port(port, "moto");
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Wipes every emulated resource.
    pub fn reset(&self) {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                &format!("{}/moto-api/reset", self.url()),
            ])
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            // curl may be absent; speak HTTP/1.1 directly.
            use std::io::{Read, Write};
            let mut s =
                std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
            write!(s, "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert!(
                reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
                "reset failed: {reply}"
            );
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Children die with the test process, so no server outlives a crashed run.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A temp directory holding a copy of the fixture stack config, with its crate path absolute.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = Project { dir };
        project.write_config(&fixture_config());
        project
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("wsctl.yaml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn read_config(&self) -> String {
        std::fs::read_to_string(self.config()).expect("read config")
    }

    /// Runs `wsctl --config <this> ARGS` against `endpoint`, with throwaway credentials and no
    /// trace of the machine's own AWS setup.
    pub fn wsctl(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command(endpoint, args).output().expect("run wsctl")
    }

    pub fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(wsctl_bin());
        cmd.arg("--config")
            .arg(self.config())
            .args(["--endpoint-url", endpoint])
            .args(args);
        isolate(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }
}

impl Default for Project {
    fn default() -> Self {
        Project::new()
    }
}

/// Removes every AWS setting of the machine from `cmd`'s environment.
pub fn isolate(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key == "WSCTL_GATEWAY_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The fixture stack config (`tests/fixtures/stack.yaml`) with its crate path made absolute.
pub fn fixture_config() -> String {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/stack.yaml")).expect("fixture config");
    let krate = root().join("tests/fixtures/echo");
    text.replace("crate: echo", &format!("crate: {}", krate.display()))
}

/// Builds the fixture function once per test run; later deploys use `--no-build`.
pub fn build_fixture() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let project = Project::new();
        let out = project.wsctl("http://127.0.0.1:9", &["build"]);
        assert!(
            out.status.success(),
            "building the fixture failed:\n{}",
            text(&out)
        );
    });
}

/// stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(out)))
}

/// An SDK config pointed at `endpoint` with throwaway credentials.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// Items in a table, by a paginated `Select=COUNT` scan.
pub async fn count_items(db: &aws_sdk_dynamodb::Client, table: &str) -> u64 {
    let mut total = 0;
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("count scan");
        total += out.count as u64;
        start = out.last_evaluated_key;
        if start.is_none() {
            return total;
        }
    }
}
