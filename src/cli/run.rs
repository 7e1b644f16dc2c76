//! `dogetower run`: the tower itself.

use std::process::ExitCode;
use std::sync::Arc;

use super::Context;
use crate::runtime;

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = Arc::new(ctx.config()?.clone());
    super::block_on(async move {
        runtime::start(config).await?.until_signal().await?;
        Ok(ExitCode::SUCCESS)
    })
}
