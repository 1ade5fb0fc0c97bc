//! What a queue operation answers ([`Answer`]): typed tasks until the edge writes them.

use serde_json::Value as Json;

use super::Task;
use crate::{DbcError, Result};

/// What a queue operation answers. Tasks stay typed until the edge writes them as JSON
/// text ([`Answer::to_text`]): the hot operations (insert, claim, settle) then build no
/// JSON tree per task only to write it out again (docs/PERFORMANCE.md, "Answers written
/// once"). Everything else is a JSON value.
#[derive(Debug)]
pub enum Answer {
    /// a JSON value
    Json(Json),
    /// one task
    Task(Box<Task>),
    /// a list of tasks
    Tasks(Vec<Task>),
}

impl Answer {
    /// The answer as a JSON value (for callers that look into it).
    pub fn into_json(self) -> Result<Json> {
        let v = match self {
            Answer::Json(j) => return Ok(j),
            Answer::Task(t) => serde_json::to_value(t),
            Answer::Tasks(t) => serde_json::to_value(t),
        };
        v.map_err(|e| DbcError::Internal(e.to_string()))
    }

    /// The answer as JSON text, written straight from the tasks.
    pub fn to_text(&self) -> Result<String> {
        let v = match self {
            Answer::Json(j) => serde_json::to_string(j),
            Answer::Task(t) => serde_json::to_string(t),
            Answer::Tasks(t) => serde_json::to_string(t),
        };
        v.map_err(|e| DbcError::Internal(e.to_string()))
    }
}
