//! The cold-start baseline: the smallest lambda_runtime function (echoes its event), built with
//! the same release profile as ours, so `coldstart` can show what our init adds.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) }))
        .await
}
