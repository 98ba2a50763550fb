//! WeCom (企业微信) emulator: access tokens, app messages and group robot
//! webhooks (reference `wecom.md`).
//!
//! Owns: `GET /cgi-bin/gettoken`, `POST /cgi-bin/message/send`,
//! `POST /cgi-bin/webhook/send`, their validation and rate limits, errcode
//! injection, and a record of every accepted message.
//!
//! Guarantees: API calls answer HTTP 200 with `errcode`/`errmsg`, the errmsg
//! decorated with a fake `hint` like real WeCom; byte limits count UTF-8
//! bytes. Secrets and keys never appear in `Debug` output or errors. Never
//! shares code with `pipe`.
//!
//! Control endpoints (all JSON; errors are 400 `{"error": "..."}`):
//! - `GET /_testkit/messages`, `GET /_testkit/stats`, `POST /_testkit/reset`
//! - `POST /_testkit/faults` `{"count":N,"target":"gettoken|app|robot|any","kind":...}`
//!   (see `WecomFault`), `DELETE /_testkit/faults`
//! - `POST /_testkit/tokens/expire` (42001 from now), `POST /_testkit/tokens/invalidate`
//!   (40014 from now), `PUT /_testkit/tokens/lifetime` `{"expires_in_secs":N}`
//! - `GET|PUT /_testkit/rate_limits` (`WecomRateLimits`)
//! - `PUT /_testkit/robot_state` `{"key":"...","state":"active|disabled|not_in_group"}`

mod cli;
pub mod codes;
mod config;
mod limits;
mod server;
mod validate;

pub use cli::{WecomArgs, WecomArgsError};
pub use config::{RobotState, WecomApp, WecomConfigError, WecomRateLimits, WecomRobot, DEFAULT_TOKEN_LIFETIME};
pub use server::{
    WecomControl, WecomControlError, WecomEmulator, WecomEmulatorBuilder, WecomFault, WecomFaultTarget, WecomMessage,
    WecomMode, WecomStartError, WecomStats, WecomWaitTimedOut,
};
