//! RotateToken's request.

use chrono::TimeDelta;

use crate::domain::error::InvalidFields;
use crate::domain::validation::{self, DurationInput, Violations};

/// Longest overlap: seven days.
pub const MAX_OVERLAP: TimeDelta = TimeDelta::days(7);

/// RotateToken's fields as received.
#[derive(Clone, Debug)]
pub struct RotateInput {
    /// `id`.
    pub id: i64,
    /// `overlap`; `None` when unset (no overlap).
    pub overlap: Option<DurationInput>,
    /// `reason`.
    pub reason: String,
}

/// A valid RotateToken request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRotate {
    id: i64,
    overlap: TimeDelta,
    reason: Option<String>,
}

impl ValidRotate {
    /// The old token's numeric id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// How long the old secret keeps authenticating (0–7 days).
    pub fn overlap(&self) -> TimeDelta {
        self.overlap
    }

    /// The reason, `None` when empty.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// RotateToken: `id` ≥ 1, `overlap` 0 to 7 days inclusive (unset: 0),
/// `reason` as in the revoke RPCs.
pub fn parse_rotate(input: RotateInput) -> Result<ValidRotate, InvalidFields> {
    let mut violations = Violations::default();
    validation::check_id(&mut violations, input.id);
    let overlap = match input.overlap {
        Some(overlap) => validation::check_duration(
            &mut violations,
            "overlap",
            overlap,
            TimeDelta::zero(),
            MAX_OVERLAP,
            "0s and 604800s (7 days)",
        )
        .unwrap_or_default(),
        None => TimeDelta::zero(),
    };
    let reason = validation::check_reason(&mut violations, &input.reason);
    violations.into_result()?;
    Ok(ValidRotate {
        id: input.id,
        overlap,
        reason,
    })
}
