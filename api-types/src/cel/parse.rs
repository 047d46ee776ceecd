//! Tokens and a recursive-descent parser for CEL expressions, with the
//! precedence of the CEL spec: `?:` < `||` < `&&` < relations (`== != < <=
//! > >= in`) < `+ -` < `* / %` < unary `! -` < member, index and call.

use super::CelError;

/// The CEL macros over a list (`list.exists(x, p)`, …): the checker and
/// the evaluator both treat these calls as comprehensions.
pub fn is_list_macro(function: &str) -> bool {
    matches!(function, "exists" | "all" | "exists_one" | "filter" | "map")
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `12`.
    Int(i64),
    /// `12u`.
    Uint(u64),
    /// `1.5`.
    Double(f64),
    /// `'x'` or `"x"`.
    Str(String),
    /// `true`, `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// An expression node; `at` is the byte offset cel-go reports errors at.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Lit),
    /// A name: `disk`, `system_disk`, `GiB`.
    Ident { name: String, at: usize },
    /// `operand.field`.
    Select {
        operand: Box<Expr>,
        field: String,
        at: usize,
    },
    /// `f(args)` or `target.f(args)`.
    Call {
        target: Option<Box<Expr>>,
        function: String,
        args: Vec<Expr>,
        at: usize,
    },
    /// An operator in cel-go's spelling: `_>_`, `!_`, `_[_]`, `_?_:_`.
    Op {
        op: &'static str,
        args: Vec<Expr>,
        at: usize,
    },
    /// `[a, b]`.
    List { items: Vec<Expr>, at: usize },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Lit),
    Punct(&'static str),
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]",
    ".", ",", "?", ":",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, CelError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let end = scan(b, i, |c| c.is_ascii_alphanumeric() || c == b'_');
            let word = &src[i..end];
            let tok = match word {
                "true" => Tok::Lit(Lit::Bool(true)),
                "false" => Tok::Lit(Lit::Bool(false)),
                "null" => Tok::Lit(Lit::Null),
                "in" => Tok::Punct("in"),
                _ => Tok::Ident(word.to_string()),
            };
            out.push((tok, i));
            i = end;
        } else if c.is_ascii_digit() {
            let (lit, end) = lex_number(src, i)?;
            out.push((Tok::Lit(lit), i));
            i = end;
        } else if c == b'"' || c == b'\'' {
            let end = lex_string(b, i).ok_or_else(|| syntax(i, "unterminated string"))?;
            let text = unescape(&src[i + 1..end - 1]).ok_or_else(|| syntax(i, "invalid escape"))?;
            out.push((Tok::Lit(Lit::Str(text)), i));
            i = end;
        } else {
            let p = PUNCTS
                .iter()
                .find(|p| src[i..].starts_with(**p))
                .ok_or_else(|| syntax(i, format!("token recognition error at: '{}'", c as char)))?;
            out.push((Tok::Punct(p), i));
            i += p.len();
        }
    }
    Ok(out)
}

fn scan(b: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    (from..b.len()).find(|&j| !ok(b[j])).unwrap_or(b.len())
}

fn lex_number(src: &str, i: usize) -> Result<(Lit, usize), CelError> {
    let b = src.as_bytes();
    let too_big = || syntax(i, "numeric literal out of range");
    let mut end = scan(b, i, |c| c.is_ascii_digit());
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = scan(b, end + 1, |c| c.is_ascii_digit());
        let v = src[i..end].parse().map_err(|_| too_big())?;
        return Ok((Lit::Double(v), end));
    }
    let digits = &src[i..end];
    match b.get(end) {
        Some(b'u' | b'U') => Ok((Lit::Uint(digits.parse().map_err(|_| too_big())?), end + 1)),
        _ => Ok((Lit::Int(digits.parse().map_err(|_| too_big())?), end)),
    }
}

/// The common escapes of CEL strings: `\\`, `\'`, `\"`, `\n`, `\t`, `\r`.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            c @ ('\\' | '\'' | '"') => c,
            _ => return None,
        });
    }
    Some(out)
}

fn lex_string(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

fn syntax(at: usize, what: impl std::fmt::Display) -> CelError {
    CelError::new(at, format!("Syntax error: {what}"))
}

/// The longest expression accepted, in code points (cel-go's default).
pub const MAX_CODE_POINTS: usize = 100_000;
/// The deepest nesting accepted (cel-go's default recursion limit): each
/// parenthesis, unary operator, binary operator in a chain, member access,
/// index and call counts one. Checking, evaluating and dropping an
/// expression recurse over its tree, so a deeper one is refused while it
/// is built, before it can exhaust a stack.
pub const MAX_DEPTH: usize = 250;

/// Parses a whole expression.
pub fn parse(src: &str) -> Result<Expr, CelError> {
    let points = src.chars().count();
    if points > MAX_CODE_POINTS {
        return Err(CelError::new(
            0,
            format!(
                "expression code point size exceeds limit: size: {points}, limit {MAX_CODE_POINTS}"
            ),
        ));
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        depth: 0,
    };
    let e = p.ternary()?;
    match p.toks.get(p.pos) {
        None => Ok(e),
        Some((_, at)) => Err(syntax(*at, "extraneous input")),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    /// How deep the tree being built is here ([`MAX_DEPTH`]).
    depth: usize,
}

/// Binary operator levels, loosest first.
const LEVELS: &[&[(&str, &str)]] = &[
    &[("||", "_||_")],
    &[("&&", "_&&_")],
    &[
        ("==", "_==_"),
        ("!=", "_!=_"),
        ("<", "_<_"),
        ("<=", "_<=_"),
        (">", "_>_"),
        (">=", "_>=_"),
        ("in", "@in"),
    ],
    &[("+", "_+_"), ("-", "_-_")],
    &[("*", "_*_"), ("/", "_/_"), ("%", "_%_")],
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, a)| *a)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.peek() == Some(&Tok::Punct(punct(p))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), CelError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(syntax(self.at(), format!("missing '{p}'")))
        }
    }

    /// One level deeper (undone by [`Parser::leave`]); refused past
    /// [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), CelError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CelError::new(
                self.at(),
                format!("expression recursion limit exceeded: {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth -= levels;
    }

    /// Parses `f` one level deeper.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, CelError>,
    ) -> Result<T, CelError> {
        self.enter()?;
        let r = super::deeper(|| f(self));
        self.leave(1);
        r
    }

    fn ternary(&mut self) -> Result<Expr, CelError> {
        self.nested(Self::ternary_inner)
    }

    fn ternary_inner(&mut self) -> Result<Expr, CelError> {
        let cond = self.binary(0)?;
        let at = self.at();
        if !self.eat("?") {
            return Ok(cond);
        }
        let yes = self.binary(0)?;
        self.expect(":")?;
        let no = self.ternary()?;
        Ok(Expr::Op {
            op: "_?_:_",
            args: vec![cond, yes, no],
            at,
        })
    }

    fn binary(&mut self, level: usize) -> Result<Expr, CelError> {
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut left = self.binary(level + 1)?;
        // Each operator in a chain puts the left side one level deeper.
        let mut chain = 0;
        loop {
            let at = self.at();
            let Some(&(_, op)) = ops
                .iter()
                .find(|(p, _)| self.peek() == Some(&Tok::Punct(punct(p))))
            else {
                self.leave(chain);
                return Ok(left);
            };
            self.pos += 1;
            if let Err(e) = self.enter() {
                self.leave(chain + 1);
                return Err(e);
            }
            chain += 1;
            let right = match self.binary(level + 1) {
                Ok(r) => r,
                Err(e) => {
                    self.leave(chain);
                    return Err(e);
                }
            };
            left = Expr::Op {
                op,
                args: vec![left, right],
                at,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        let at = self.at();
        for (p, op) in [("!", "!_"), ("-", "-_")] {
            if self.eat(p) {
                let operand = self.nested(Self::unary)?;
                return Ok(Expr::Op {
                    op,
                    args: vec![operand],
                    at,
                });
            }
        }
        self.member()
    }

    fn member(&mut self) -> Result<Expr, CelError> {
        let mut chain = 0;
        let r = self.member_chain(&mut chain);
        self.leave(chain);
        r
    }

    /// A primary and its member, index and call suffixes, each one level
    /// deeper (counted in `chain`).
    fn member_chain(&mut self, chain: &mut usize) -> Result<Expr, CelError> {
        let mut e = self.primary()?;
        loop {
            let at = self.at();
            if matches!(self.peek(), Some(Tok::Punct("." | "["))) {
                *chain += 1;
                self.enter()?;
            }
            if self.eat(".") {
                let name = self.ident()?;
                e = if self.eat("(") {
                    let args = self.args(")")?;
                    Expr::Call {
                        target: Some(Box::new(e)),
                        function: name,
                        args,
                        at,
                    }
                } else {
                    Expr::Select {
                        operand: Box::new(e),
                        field: name,
                        at,
                    }
                };
            } else if self.eat("[") {
                let index = self.ternary()?;
                self.expect("]")?;
                e = Expr::Op {
                    op: "_[_]",
                    args: vec![e, index],
                    at,
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        let at = self.at();
        match self.toks.get(self.pos).map(|(t, _)| t.clone()) {
            Some(Tok::Lit(l)) => {
                self.pos += 1;
                Ok(Expr::Lit(l))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                if self.eat("(") {
                    let args = self.args(")")?;
                    return Ok(Expr::Call {
                        target: None,
                        function: name,
                        args,
                        at,
                    });
                }
                Ok(Expr::Ident { name, at })
            }
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                let e = self.ternary()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Punct("[")) => {
                self.pos += 1;
                let items = self.args("]")?;
                Ok(Expr::List { items, at })
            }
            Some(_) => Err(syntax(at, "mismatched input")),
            None => Err(syntax(at, "mismatched input '<EOF>'")),
        }
    }

    fn ident(&mut self) -> Result<String, CelError> {
        match self.peek().cloned() {
            Some(Tok::Ident(n)) => {
                self.pos += 1;
                Ok(n)
            }
            _ => Err(syntax(self.at(), "expected a field name")),
        }
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, CelError> {
        let mut out = Vec::new();
        if self.eat(close) {
            return Ok(out);
        }
        loop {
            out.push(self.ternary()?);
            if self.eat(close) {
                return Ok(out);
            }
            self.expect(",")?;
        }
    }
}

/// The `&'static str` spelling of a punctuation token.
fn punct(p: &str) -> &'static str {
    PUNCTS
        .iter()
        .copied()
        .chain(["in"])
        .find(|q| *q == p)
        .unwrap_or("")
}
