//! Evaluation of a checked expression against values. The checker has
//! already proven every name, field and overload, so what is left to fail
//! at run time is what fails in cel-go too: overflow, division by zero, a
//! bad regular expression, an index out of range.

use super::parse::{Expr, Lit};
use std::collections::BTreeMap;

/// A CEL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `int`.
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `double`.
    Double(f64),
    /// `string`.
    String(String),
    /// `bool`.
    Bool(bool),
    /// `null`.
    Null,
    /// `list`.
    List(Vec<Value>),
    /// A message (`disk`, `volume`): its fields.
    Message(BTreeMap<String, Value>),
}

/// The names an expression sees.
pub type Bindings = BTreeMap<String, Value>;

/// Evaluates `e` with `vars` bound.
pub fn eval(e: &Expr, vars: &Bindings) -> Result<Value, String> {
    Eval {
        scopes: vec![vars.clone()],
    }
    .expr(e)
}

/// Size constants of the Talos environments.
fn unit(name: &str) -> Option<u64> {
    let k: u64 = 1000;
    Some(match name {
        "kB" => k,
        "MB" => k.pow(2),
        "GB" => k.pow(3),
        "TB" => k.pow(4),
        "PB" => k.pow(5),
        "EB" => k.pow(6),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return None,
    })
}

struct Eval {
    scopes: Vec<Bindings>,
}

impl Eval {
    fn expr(&mut self, e: &Expr) -> Result<Value, String> {
        super::deeper(|| self.expr_here(e))
    }

    fn expr_here(&mut self, e: &Expr) -> Result<Value, String> {
        match e {
            Expr::Lit(l) => Ok(lit(l)),
            Expr::Ident { name, .. } => self.ident(name),
            Expr::Select { operand, field, .. } => match self.expr(operand)? {
                Value::Message(m) => Ok(m.get(field).cloned().unwrap_or(Value::Null)),
                _ => Err(format!("no such field '{field}'")),
            },
            Expr::List { items, .. } => items
                .iter()
                .map(|i| self.expr(i))
                .collect::<Result<_, _>>()
                .map(Value::List),
            Expr::Op { op, args, .. } => self.op(op, args),
            Expr::Call {
                target,
                function,
                args,
                ..
            } => self.call(target.as_deref(), function, args),
        }
    }

    fn ident(&self, name: &str) -> Result<Value, String> {
        if let Some(v) = self.scopes.iter().rev().find_map(|s| s.get(name)) {
            return Ok(v.clone());
        }
        unit(name)
            .map(Value::Uint)
            .ok_or_else(|| format!("no such attribute '{name}'"))
    }

    fn op(&mut self, op: &str, args: &[Expr]) -> Result<Value, String> {
        match op {
            "_&&_" | "_||_" => self.logic(op == "_&&_", &args[0], &args[1]),
            "_?_:_" => match self.expr(&args[0])? {
                Value::Bool(true) => self.expr(&args[1]),
                Value::Bool(false) => self.expr(&args[2]),
                _ => Err("the condition of ?: is not a bool".into()),
            },
            _ => {
                let vals = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>, _>>()?;
                apply(op, &vals)
            }
        }
    }

    /// `&&` / `||`, short-circuiting from the left.
    fn logic(&mut self, and: bool, l: &Expr, r: &Expr) -> Result<Value, String> {
        match self.expr(l)? {
            Value::Bool(b) if b != and => Ok(Value::Bool(b)),
            Value::Bool(_) => match self.expr(r)? {
                Value::Bool(b) => Ok(Value::Bool(b)),
                _ => Err("a logical operand is not a bool".into()),
            },
            _ => Err("a logical operand is not a bool".into()),
        }
    }

    fn call(
        &mut self,
        target: Option<&Expr>,
        function: &str,
        args: &[Expr],
    ) -> Result<Value, String> {
        if let (Some(t), [Expr::Ident { name, .. }, body]) = (target, args) {
            if super::parse::is_list_macro(function) {
                return self.comprehension(t, function, name, body);
            }
        }
        if function == "has" {
            return match args {
                [Expr::Select { operand, field, .. }] => match self.expr(operand)? {
                    Value::Message(m) => {
                        Ok(Value::Bool(m.get(field).is_some_and(|v| v != &Value::Null)))
                    }
                    _ => Ok(Value::Bool(false)),
                },
                _ => Err("invalid argument to has()".into()),
            };
        }
        let mut vals = Vec::new();
        if let Some(t) = target {
            vals.push(self.expr(t)?);
        }
        for a in args {
            vals.push(self.expr(a)?);
        }
        function_call(function, &vals)
    }

    fn comprehension(
        &mut self,
        target: &Expr,
        function: &str,
        var: &str,
        body: &Expr,
    ) -> Result<Value, String> {
        let Value::List(items) = self.expr(target)? else {
            return Err(format!("{function}() needs a list"));
        };
        let mut results = Vec::new();
        for item in items {
            self.scopes
                .push(BTreeMap::from([(var.to_string(), item.clone())]));
            let r = self.expr(body);
            self.scopes.pop();
            results.push((item, r?));
        }
        let truth = |v: &Value| v == &Value::Bool(true);
        Ok(match function {
            "exists" => Value::Bool(results.iter().any(|(_, r)| truth(r))),
            "all" => Value::Bool(results.iter().all(|(_, r)| truth(r))),
            "exists_one" => Value::Bool(results.iter().filter(|(_, r)| truth(r)).count() == 1),
            "filter" => Value::List(
                results
                    .into_iter()
                    .filter(|(_, r)| truth(r))
                    .map(|(i, _)| i)
                    .collect(),
            ),
            _ => Value::List(results.into_iter().map(|(_, r)| r).collect()),
        })
    }
}

fn lit(l: &Lit) -> Value {
    match l {
        Lit::Int(v) => Value::Int(*v),
        Lit::Uint(v) => Value::Uint(*v),
        Lit::Double(v) => Value::Double(*v),
        Lit::Str(s) => Value::String(s.clone()),
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Null => Value::Null,
    }
}

fn overflow() -> String {
    "return error for overflow".into()
}

/// An operator on evaluated operands.
fn apply(op: &str, v: &[Value]) -> Result<Value, String> {
    use Value::{Bool, Double, Int, List, Uint};
    Ok(match (op, v) {
        ("!_", [Bool(b)]) => Bool(!b),
        ("-_", [Int(i)]) => Int(i.checked_neg().ok_or_else(overflow)?),
        ("-_", [Double(d)]) => Double(-d),
        ("_==_", [a, b]) => Bool(a == b),
        ("_!=_", [a, b]) => Bool(a != b),
        ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => Bool(compare(op, a, b)?),
        ("@in", [x, List(items)]) => Bool(items.contains(x)),
        ("_[_]", [List(items), Int(i)]) => usize::try_from(*i)
            .ok()
            .and_then(|i| items.get(i).cloned())
            .ok_or_else(|| format!("index out of range: {i}"))?,
        ("_+_", [Value::String(a), Value::String(b)]) => Value::String(format!("{a}{b}")),
        ("_+_", [List(a), List(b)]) => List([a.clone(), b.clone()].concat()),
        (_, [Int(a), Int(b)]) => Int(checked_arith(op, *a, *b)?),
        (_, [Uint(a), Uint(b)]) => Uint(checked_arith(op, *a, *b)?),
        (_, [Double(a), Double(b)]) => Double(double_arith(op, *a, *b)?),
        _ => return Err(format!("no such overload: {op}")),
    })
}

fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, String> {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Uint(x), Value::Uint(y)) => x.cmp(y),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y).ok_or("NaN compared")?,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => return Err(format!("no such overload: {op}")),
    };
    Ok(match op {
        "_<_" => ord == Ordering::Less,
        "_<=_" => ord != Ordering::Greater,
        "_>_" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

/// Integer arithmetic for `int` and `uint` alike, done in `i128` (wide
/// enough for every operand of either) and range-checked back into the
/// operands' type: cel-go reports overflow and division by zero as
/// errors, never wraps.
fn checked_arith<T: TryFrom<i128> + Into<i128>>(op: &str, a: T, b: T) -> Result<T, String> {
    let (a, b): (i128, i128) = (a.into(), b.into());
    let r = match op {
        "_+_" => a.checked_add(b),
        "_-_" => a.checked_sub(b),
        "_*_" => a.checked_mul(b),
        "_/_" if b == 0 => return Err("division by zero".into()),
        "_/_" => a.checked_div(b),
        "_%_" if b == 0 => return Err("modulus by zero".into()),
        "_%_" => a.checked_rem(b),
        _ => return Err(format!("no such overload: {op}")),
    };
    r.and_then(|r| T::try_from(r).ok()).ok_or_else(overflow)
}

fn double_arith(op: &str, a: f64, b: f64) -> Result<f64, String> {
    Ok(match op {
        "_+_" => a + b,
        "_-_" => a - b,
        "_*_" => a * b,
        "_/_" => a / b,
        _ => return Err(format!("no such overload: {op}")),
    })
}

/// A function or method on evaluated arguments (receiver first).
fn function_call(name: &str, v: &[Value]) -> Result<Value, String> {
    use Value::{Bool, Double, Int, List, Uint};
    let s = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    Ok(match (name, v) {
        ("startsWith", [a, b]) => Bool(s(a).zip(s(b)).is_some_and(|(a, b)| a.starts_with(&b))),
        ("endsWith", [a, b]) => Bool(s(a).zip(s(b)).is_some_and(|(a, b)| a.ends_with(&b))),
        ("contains", [a, b]) => Bool(s(a).zip(s(b)).is_some_and(|(a, b)| a.contains(&b))),
        ("matches", [a, b]) => {
            let (text, re) = s(a).zip(s(b)).ok_or("matches() takes strings")?;
            let re =
                regex::Regex::new(&re).map_err(|e| format!("invalid regular expression: {e}"))?;
            Bool(re.is_match(&text))
        }
        ("size", [Value::String(x)]) => {
            Int(i64::try_from(x.chars().count()).map_err(|_| overflow())?)
        }
        ("size", [List(x)]) => Int(i64::try_from(x.len()).map_err(|_| overflow())?),
        ("int", [Uint(u)]) => Int(i64::try_from(*u).map_err(|_| overflow())?),
        ("int", [Int(i)]) => Int(*i),
        ("uint", [Int(i)]) => Uint(u64::try_from(*i).map_err(|_| overflow())?),
        ("uint", [Uint(u)]) => Uint(*u),
        #[allow(clippy::cast_precision_loss)]
        ("double", [Int(i)]) => Double(*i as f64),
        #[allow(clippy::cast_precision_loss)]
        ("double", [Uint(u)]) => Double(*u as f64),
        ("string", [x]) => Value::String(match x {
            Value::String(t) => t.clone(),
            Int(i) => i.to_string(),
            Uint(u) => u.to_string(),
            Double(d) => d.to_string(),
            Bool(b) => b.to_string(),
            other => return Err(format!("string() of {other:?}")),
        }),
        _ => return Err(format!("no such overload: {name}")),
    })
}
