//! Label encoders: a category's code is its rank among the categories seen in training, plus
//! one; code 0 is the explicit unknown code, shared by `?` and by categories never seen.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The code of `?` and of every category the processor did not see in training.
pub const UNKNOWN_CODE: u32 = 0;

/// Text written for an unknown answer in the UCI files.
pub const UNKNOWN_TEXT: &str = "?";

/// Label encoder of one categorical column. Serialized as its sorted category list so that the
/// same training data always gives byte-identical processor files; the lookup table is rebuilt on
/// load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Encoder {
    categories: Vec<String>,
    index: HashMap<String, u32>,
}

impl Encoder {
    /// Learns the categories of a column (`?` excluded: it is the unknown code).
    pub fn fit<'a>(values: impl Iterator<Item = &'a str>) -> Self {
        let mut categories: Vec<String> = values
            .filter(|v| *v != UNKNOWN_TEXT)
            .map(str::to_owned)
            .collect();
        categories.sort_unstable();
        categories.dedup();
        categories.into()
    }

    /// The code of `value`: [`UNKNOWN_CODE`] for `?` and for unseen categories.
    pub fn encode(&self, value: &str) -> u32 {
        self.index.get(value).copied().unwrap_or(UNKNOWN_CODE)
    }

    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }
}

impl From<Vec<String>> for Encoder {
    fn from(categories: Vec<String>) -> Self {
        let index = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32 + 1))
            .collect();
        Encoder { categories, index }
    }
}

impl From<Encoder> for Vec<String> {
    fn from(e: Encoder) -> Self {
        e.categories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unseen_share_the_unknown_code() {
        let enc = Encoder::fit(["b", "a", "?", "b"].into_iter());
        assert_eq!(enc.len(), 2);
        assert_eq!(enc.encode("a"), 1);
        assert_eq!(enc.encode("b"), 2);
        assert_eq!(enc.encode("?"), UNKNOWN_CODE);
        assert_eq!(enc.encode("never seen"), UNKNOWN_CODE);
    }
}
