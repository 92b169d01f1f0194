#[derive(Debug, Clone, clap::Args)]
pub struct ColdstartArgs {}
pub async fn run(_a: &ColdstartArgs, _o: &std::path::Path, _j: bool) -> Result<(), String> { Ok(()) }
