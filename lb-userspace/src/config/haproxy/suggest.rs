//! "did you mean": HAProxy's word fingerprints (letter-pair counts), not an edit distance.
use crate::fuzzy::Fingerprint;

/// The candidate closest to `word`, or `None` when nothing is close enough (HAProxy's
/// `cfg_find_best_match()` rule: distance at most twice the length of either word). Of
/// equally close candidates the first wins, so the order of `candidates` matters.
pub fn best_match<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let fw = Fingerprint::of(word);
    let mut best: Option<(&str, usize)> = None;
    for &cand in candidates {
        let dist = fw.distance(&Fingerprint::of(cand)) as usize;
        if best.is_none_or(|(_, d)| dist < d) {
            best = Some((cand, dist));
        }
    }
    let (cand, dist) = best?;
    if dist > 2 * word.len() || dist > 2 * cand.len() {
        None
    } else {
        Some(cand)
    }
}

/// The end of an "unknown keyword" message: HAProxy's suggestion, or `otherwise` when no
/// candidate is close.
pub(super) fn did_you_mean(word: &str, candidates: &[&str], otherwise: &str) -> String {
    match best_match(word, candidates) {
        Some(b) => format!("; did you mean '{b}' maybe ?"),
        None => otherwise.to_string(),
    }
}
