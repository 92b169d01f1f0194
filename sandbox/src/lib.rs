//! The pearlsync sandbox: a stateful stand-in for Brightpearl and the three channels over real
//! HTTP, with the real limits and injected faults. Tests, the demo and the benchmarks start it
//! in-process with `start`; `pearlsync-sandbox` runs it standalone.

pub mod brightpearl;
pub mod channels;
pub mod faults;

use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    pub brightpearl: brightpearl::BrightpearlSandboxConfig,
    pub channels: channels::ChannelSandboxConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            brightpearl: brightpearl::BrightpearlSandboxConfig::default(),
            channels: channels::ChannelSandboxConfig::default(),
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub brightpearl: Arc<brightpearl::BrightpearlSandbox>,
    pub channels: Arc<channels::ChannelSandbox>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Sandbox {
    /// Waits until the server stops (for the standalone binary).
    pub async fn serve_forever(mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Keep the real shutdown sender alive for as long as we wait.
        let _keep = self.shutdown.replace(tx);
        let _ = rx.await;
    }
}

/// Starts the sandbox on `config.addr` and returns once it accepts connections.
pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let brightpearl = Arc::new(brightpearl::BrightpearlSandbox::new(config.brightpearl.clone(), &base_url));
    let channels = Arc::new(channels::ChannelSandbox::new(config.channels.clone(), &base_url));
    let app = axum::Router::new()
        .merge(brightpearl::router(Arc::clone(&brightpearl)))
        .merge(channels::router(Arc::clone(&channels)));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Sandbox { addr, base_url, brightpearl, channels, shutdown: Some(tx) })
}
