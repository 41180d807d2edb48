//! Cutting one line into words, exactly as HAProxy 2.6's `parse_line()` does with the
//! options `readcfgfile()` passes.
use super::MAX_LINE_ARGS;

/// Why a line could not be cut into words; `pos` is 1-based, in bytes from the start of the
/// raw line (as HAProxy counts it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    UnmatchedQuote { pos: usize },
    BadHex { pos: usize },
    VarName { pos: usize },
    Brace { pos: usize },
    WrongExpand { pos: usize },
    TooMany,
    NotUtf8 { word: usize },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::UnmatchedQuote { pos } => write!(f, "unmatched quote at position {pos}"),
            TokenError::BadHex { pos } => write!(
                f,
                "truncated or invalid hexadecimal sequence at position {pos}"
            ),
            TokenError::VarName { pos } => write!(
                f,
                "forbidden first char in environment variable name at position {pos}"
            ),
            TokenError::Brace { pos } => write!(
                f,
                "unmatched brace in environment variable name at position {pos}"
            ),
            TokenError::WrongExpand { pos } => write!(
                f,
                "truncated or invalid word expansion sequence at position {pos}"
            ),
            TokenError::TooMany => {
                write!(f, "too many words on the line (at most {MAX_LINE_ARGS})")
            }
            TokenError::NotUtf8 { word } => write!(
                f,
                "word {word} is not valid UTF-8 once unescaped (check its \\x escapes)"
            ),
        }
    }
}

/// What an environment variable lookup gives: `Err(())` for an unknown pseudo-variable
/// (`${.FOO}`), which HAProxy refuses.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ()>;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

/// Cuts one configuration line into words exactly as HAProxy 2.6's `parse_line()` does with
/// the options `readcfgfile()` passes: `#` comments, `"weak"` and `'strong'` quoting,
/// backslash escapes (`\ `, `\\`, `\#`, `\'`, `\"`, `\t`, `\n`, `\r`, `\xNN`, and `\$` inside
/// double quotes; any other backslash is kept as is), and `$VAR` / `${VAR}` / `${VAR-default}`
/// / `${VAR[*]}` expansion inside double quotes only.
pub fn tokenize(line: &str, env: EnvLookup) -> Result<Vec<String>, TokenError> {
    let mut t = Tokenizer {
        line,
        b: line.as_bytes(),
        i: 0,
        words: Vec::new(),
        cur: Vec::new(),
        started: false,
        squote: false,
        dquote: false,
        quote_pos: 0,
    };
    t.skip_spaces();
    while let Some(&c) = t.b.get(t.i) {
        let quoted = t.squote || t.dquote;
        match c {
            b'\n' | b'\r' | 0 => break,
            b'#' if !quoted => break,
            b'"' if !t.squote => {
                t.dquote = !t.dquote;
                t.quote_opened_or_closed();
            }
            b'\'' if !t.dquote => {
                t.squote = !t.squote;
                t.quote_opened_or_closed();
            }
            b'\\' if !t.squote => t.escape()?,
            c if is_space(c) && !quoted => {
                t.skip_spaces();
                t.end_word()?;
            }
            b'$' if t.dquote => t.variable(env)?,
            c => {
                t.cur.push(c);
                t.started = true;
                t.i += 1;
            }
        }
    }
    if t.squote || t.dquote {
        return Err(TokenError::UnmatchedQuote {
            pos: t.quote_pos + 1,
        });
    }
    t.end_word()?;
    t.words
        .into_iter()
        .enumerate()
        .map(|(n, w)| String::from_utf8(w).map_err(|_| TokenError::NotUtf8 { word: n + 1 }))
        .collect()
}

/// A line being cut: words are bytes until the end, as `\xNN` may build any byte.
struct Tokenizer<'a> {
    line: &'a str,
    b: &'a [u8],
    /// Next byte to read.
    i: usize,
    words: Vec<Vec<u8>>,
    cur: Vec<u8>,
    /// A word exists once it has a character or an opening quote (`""` is an empty word).
    started: bool,
    squote: bool,
    dquote: bool,
    /// Where the last quote was, for the "unmatched quote" position.
    quote_pos: usize,
}

impl Tokenizer<'_> {
    fn skip_spaces(&mut self) {
        while self.b.get(self.i).is_some_and(|&c| is_space(c)) {
            self.i += 1;
        }
    }

    fn quote_opened_or_closed(&mut self) {
        self.quote_pos = self.i;
        self.started = true;
        self.i += 1;
    }

    fn push_word(&mut self) -> Result<(), TokenError> {
        if self.words.len() >= MAX_LINE_ARGS {
            return Err(TokenError::TooMany);
        }
        self.words.push(std::mem::take(&mut self.cur));
        Ok(())
    }

    /// Ends the current word, if one was started.
    fn end_word(&mut self) -> Result<(), TokenError> {
        if self.started {
            self.push_word()?;
            self.started = false;
        }
        Ok(())
    }

    /// A backslash outside strong quotes, at `self.i`.
    fn escape(&mut self) -> Result<(), TokenError> {
        let i = self.i;
        self.started = true;
        let (byte, len) = match self.b.get(i + 1).copied() {
            Some(c @ (b' ' | b'\\' | b'#' | b'\'' | b'"')) => (c, 2),
            Some(b't') => (b'\t', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b'$') if self.dquote => (b'$', 2),
            Some(b'x') => {
                let hex = |k: usize| self.b.get(k).and_then(|&h| (h as char).to_digit(16));
                match (hex(i + 2), hex(i + 3)) {
                    (Some(h), Some(l)) => ((h * 16 + l) as u8, 4),
                    _ => return Err(TokenError::BadHex { pos: i + 1 }),
                }
            }
            // Not an escape sequence (this includes a backslash at the end of the line:
            // HAProxy has no line continuation): the backslash stays.
            _ => (b'\\', 1),
        };
        self.cur.push(byte);
        self.i += len;
        Ok(())
    }

    /// `$NAME`, `${NAME}`, `${NAME-default}` or `${NAME[*]}` inside double quotes, at
    /// `self.i`: the value joins the current word (`[*]` splits it into words).
    fn variable(&mut self, env: EnvLookup) -> Result<(), TokenError> {
        let b = self.b;
        self.i += 1;
        let brace = (b.get(self.i) == Some(&b'{')).then_some(self.i);
        if brace.is_some() {
            self.i += 1;
        }
        let name_start = self.i;
        let first = b.get(name_start).copied().unwrap_or(0);
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b'.') {
            return Err(TokenError::VarName {
                pos: name_start + 1,
            });
        }
        if first == b'.' {
            self.i += 1;
        }
        while b
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        let mut value = env(&self.line[name_start..self.i]).map_err(|()| TokenError::VarName {
            pos: name_start + 1,
        })?;
        let mut expand = false;
        if let Some(open) = brace {
            expand = self.expand_suffix()?;
            if let Some(default) = self.closing_brace(open)? {
                value = value.or(Some(default));
            }
        }
        self.started = true;
        if let Some(v) = value {
            self.append_value(&v, expand)?;
        }
        Ok(())
    }

    /// `[*]` after a braced name: the value is split into words.
    fn expand_suffix(&mut self) -> Result<bool, TokenError> {
        if self.b.get(self.i) != Some(&b'[') {
            return Ok(false);
        }
        if self.b.get(self.i + 1) != Some(&b'*') || self.b.get(self.i + 2) != Some(&b']') {
            return Err(TokenError::WrongExpand { pos: self.i + 1 });
        }
        self.i += 3;
        Ok(true)
    }

    /// The `}` of `${...`, opened at `open`; returns the default of `${NAME-default}`.
    fn closing_brace(&mut self, open: usize) -> Result<Option<String>, TokenError> {
        let mut default = None;
        if self.b.get(self.i) == Some(&b'-') {
            let start = self.i + 1;
            let Some(len) = self.b[start..].iter().position(|&c| c == b'}') else {
                return Err(TokenError::Brace { pos: open + 1 });
            };
            default = Some(self.line[start..start + len].to_string());
            self.i = start + len;
        } else if self.b.get(self.i) != Some(&b'}') {
            return Err(TokenError::Brace { pos: open + 1 });
        }
        self.i += 1;
        Ok(default)
    }

    fn append_value(&mut self, v: &str, expand: bool) -> Result<(), TokenError> {
        let vb = v.as_bytes();
        let mut k = 0;
        while k < vb.len() {
            if expand && vb[k].is_ascii_whitespace() {
                self.push_word()?;
                while k < vb.len() && vb[k].is_ascii_whitespace() {
                    k += 1;
                }
            } else {
                self.cur.push(vb[k]);
                k += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokenize(line, &|_| Ok(None)).expect("tokenizes")
    }

    fn env_words(line: &str) -> Result<Vec<String>, TokenError> {
        tokenize(line, &|n: &str| match n {
            "HOST" => Ok(Some("10.0.0.1".into())),
            "LIST" => Ok(Some("a b  c".into())),
            "EMPTY" => Ok(Some(String::new())),
            n if n.starts_with('.') => Err(()),
            _ => Ok(None),
        })
    }

    #[test]
    fn comments_and_spaces() {
        assert_eq!(words("  global#this is the global section"), ["global"]);
        assert_eq!(words("mode             http   # or tcp"), ["mode", "http"]);
        assert_eq!(words("a\tb\x0bc"), ["a", "b", "c"]);
        assert!(words("   # only a comment").is_empty());
        assert!(words("").is_empty());
        assert_eq!(words("a#b"), ["a"]);
        assert_eq!(words("a\r\nignored"), ["a"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(
            words(r#"log-format "%{+Q}o %t"' %s'\ %{-Q}r"#),
            ["log-format", "%{+Q}o %t %s %{-Q}r"]
        );
        assert_eq!(
            words(r##"a "#not a comment" 'b # c'"##),
            ["a", "#not a comment", "b # c"]
        );
        assert_eq!(words(r#"a "" b"#), ["a", "", "b"]);
        assert_eq!(words(r#"'it''s'"#), ["its"]);
        assert_eq!(
            words(r#""single ' inside" 'double " inside'"#),
            ["single ' inside", "double \" inside"]
        );
        // No escapes inside strong quotes.
        assert_eq!(words(r"'a\nb'"), [r"a\nb"]);
        assert_eq!(
            tokenize(r#"option "unterminated"#, &|_| Ok(None)),
            Err(TokenError::UnmatchedQuote { pos: 8 })
        );
        assert_eq!(
            tokenize("  x 'open", &|_| Ok(None)),
            Err(TokenError::UnmatchedQuote { pos: 5 })
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r"a\#b"), ["a#b"]);
        assert_eq!(words(r"a\\b"), [r"a\b"]);
        assert_eq!(words(r#"\'\""#), [r#"'""#]);
        assert_eq!(words(r"\t\r\n"), ["\t\r\n"]);
        assert_eq!(words(r"\x41\x62"), ["Ab"]);
        assert_eq!(words(r#""\x41 \$""#), ["A $"]);
        // Unknown escapes and `\$` outside double quotes keep the backslash.
        assert_eq!(words(r"\1 \$x \q"), [r"\1", r"\$x", r"\q"]);
        // A trailing backslash is a literal character: no line continuation.
        assert_eq!(
            words(r"server a 1.2.3.4:80 \"),
            ["server", "a", "1.2.3.4:80", r"\"]
        );
        assert_eq!(words(r"check\"), [r"check\"]);
        assert_eq!(
            tokenize(r"a \x4", &|_| Ok(None)),
            Err(TokenError::BadHex { pos: 3 })
        );
        assert_eq!(
            tokenize(r"a \xzz", &|_| Ok(None)),
            Err(TokenError::BadHex { pos: 3 })
        );
        assert_eq!(
            tokenize(r"\xff", &|_| Ok(None)),
            Err(TokenError::NotUtf8 { word: 1 })
        );
    }

    #[test]
    fn environment() {
        assert_eq!(
            env_words(r#"bind "$HOST:80""#),
            Ok(vec!["bind".into(), "10.0.0.1:80".into()])
        );
        assert_eq!(env_words(r#""${HOST}x""#), Ok(vec!["10.0.0.1x".into()]));
        assert_eq!(
            env_words(r#""${NOPE-1.2.3.4}:80""#),
            Ok(vec!["1.2.3.4:80".into()])
        );
        assert_eq!(env_words(r#""${EMPTY-dflt}""#), Ok(vec!["".into()]));
        assert_eq!(
            env_words(r#"x "${LIST[*]}""#),
            Ok(vec!["x".into(), "a".into(), "b".into(), "c".into()])
        );
        assert_eq!(env_words(r#"$HOST"#), Ok(vec!["$HOST".into()]));
        assert_eq!(env_words(r#"'$HOST'"#), Ok(vec!["$HOST".into()]));
        assert_eq!(env_words(r#""$1""#), Err(TokenError::VarName { pos: 3 }));
        assert_eq!(env_words(r#""${HOST""#), Err(TokenError::Brace { pos: 3 }));
        assert_eq!(
            env_words(r#""${HOST[x]}""#),
            Err(TokenError::WrongExpand { pos: 8 })
        );
        assert_eq!(
            env_words(r#""${.NOPE}""#),
            Err(TokenError::VarName { pos: 4 })
        );
    }

    #[test]
    fn too_many_words() {
        let line = vec!["w"; MAX_LINE_ARGS].join(" ");
        assert_eq!(words(&line).len(), MAX_LINE_ARGS);
        assert_eq!(
            tokenize(&format!("{line} x"), &|_| Ok(None)),
            Err(TokenError::TooMany)
        );
    }
}
