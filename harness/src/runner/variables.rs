//! The variables of one run: values that named regex groups captured, shared by
//! every actor, so a token one actor reads can be sent back by another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::matcher::Captures;

#[derive(Debug, Default)]
pub struct Variables {
    values: Mutex<HashMap<Arc<str>, Bytes>>,
}

impl Variables {
    /// Stores every capture; a later capture of a name replaces the earlier value.
    pub fn set(&self, captures: Captures) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in captures.iter() {
            values.insert(Arc::from(name), value.clone());
        }
    }

    /// Stores one value (a capture that is not a step's, e.g. `ready = { log }`).
    pub fn insert(&self, name: &str, value: Bytes) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(Arc::from(name), value);
    }

    /// The value of `name`, if some step captured it already.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(name).cloned()
    }
}
