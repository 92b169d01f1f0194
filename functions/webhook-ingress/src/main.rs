//! webhook-ingress Lambda (Function URL): wiring only; `pearlsync::ingress` verifies, dedups
//! and enqueues.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;
use pearlsync::ingress::Ingress;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "webhook-ingress").await?;
    let ingress = &Ingress::from_app(&app);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(ingress.handle_event(event.payload).await?)
    }))
    .await
}
