//! `hwdr on-failure <unit>`: the `OnFailure=` hook of hwdr's units
//! (`hwdr-failure@.service`). Logs one journal entry with its own
//! `MESSAGE_ID`, naming the failed unit, for alerting.

use anyhow::{bail, Result};
use tracing::error;

use crate::exit::Code;
use crate::logging::MSG_UNIT_FAILED;

/// Logs that `unit` failed.
pub fn run(unit: &str) -> Result<Code> {
    let valid = !unit.is_empty() && unit.len() <= 256 && unit.chars().all(|c| c.is_ascii_graphic());
    if !valid {
        bail!("'{}' is not a unit name", unit.escape_debug());
    }
    error!(
        message_id = MSG_UNIT_FAILED,
        hwdr_failed_unit = unit,
        "{unit} failed: see journalctl -u {unit}"
    );
    Ok(Code::Success)
}
