//! HAProxy's "did you mean": word fingerprints (`update_word_fingerprint` and
//! `word_fingerprint_distance` in HAProxy's `src/tools.c`), not an edit distance. Each word
//! adds its transitions between character classes (letters, digit, other/begin/end) to a
//! 32x32 table; two fingerprints are as far apart as their tables differ. Used by the config
//! parser (unknown keywords) and the runtime API (unknown commands).

/// The fingerprint of one or more words.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 1024]);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint([0; 1024])
    }
}

impl Fingerprint {
    pub fn of(word: &str) -> Fingerprint {
        let mut fp = Fingerprint::default();
        fp.add(word);
        fp
    }

    /// Adds `word` (HAProxy's `update_word_fingerprint`).
    pub fn add(&mut self, word: &str) {
        let class = |c: u8| -> usize {
            match c.to_ascii_lowercase() {
                c @ b'a'..=b'z' => usize::from(c - b'a') + 1,
                b'0'..=b'9' => 27,
                _ => 28,
            }
        };
        let fp = &mut self.0;
        let mut from = 28;
        for &c in word.as_bytes() {
            let to = class(c);
            fp[to] = 1;
            fp[32 * from + to] = fp[32 * from + to].wrapping_add(1);
            from = to;
        }
        fp[32 * from + 28] = fp[32 * from + 28].wrapping_add(1);
    }

    pub fn distance(&self, other: &Fingerprint) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(&x, &y)| u32::from(x.abs_diff(y)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_close() {
        let server = Fingerprint::of("server");
        assert!(
            Fingerprint::of("serverr").distance(&server)
                < Fingerprint::of("balance").distance(&server)
        );
        assert_eq!(server.distance(&server), 0);
    }
}
