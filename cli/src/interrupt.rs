//! Ctrl-C for the commands that run until it (`tail`, `logs --follow`).

use tokio::sync::watch;

/// Ctrl-C, listened for from when it is made to the end of the command. A fresh
/// `tokio::signal::ctrl_c()` at each wait only sees a Ctrl-C that comes during that wait: one
/// that comes while the command polls or prints would be lost, and the command would run on.
pub struct CtrlC(watch::Receiver<bool>);

impl CtrlC {
    pub fn listen() -> CtrlC {
        let (pressed, rx) = watch::channel(false);
        tokio::spawn(async move {
            match tokio::signal::ctrl_c().await {
                Ok(()) => {
                    let _ = pressed.send(true);
                }
                // No handler could be installed: Ctrl-C keeps its default, ending the process.
                Err(_) => std::future::pending::<()>().await,
            }
        });
        CtrlC(rx)
    }

    /// Returns once Ctrl-C has been pressed, at once if it already was.
    pub async fn pressed(&mut self) {
        let _ = self.0.wait_for(|pressed| *pressed).await;
    }
}
