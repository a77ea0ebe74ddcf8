//! A moto server on a free loopback port, owned by `wsctl dev` and stopped with it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::LocalError;

pub struct Moto {
    pub url: String,
    child: Child,
}

impl Moto {
    pub async fn start() -> Result<Moto, LocalError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|source| LocalError::Port { port: 0, source })?;
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            // moto answers every origin by default (`Access-Control-Allow-Origin: *`): a web
            // page whose name is rebound to 127.0.0.1 could read the stack's secret from it.
            // Browsers then refuse to hand its answers to any page.
            .env("MOTO_DISABLE_GLOBAL_CORS", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        super::os::own_child(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| LocalError::MotoMissing(e.to_string()))?;
        let started = Instant::now();
        let limit = Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LocalError::MotoMissing(format!(
                    "it exited at start: {status}"
                )));
            }
            if started.elapsed() > limit {
                return Err(LocalError::MotoSlow {
                    port,
                    seconds: limit.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Moto {
    /// Kills the server and reaps it, so not even a zombie is left.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
