//! The type checker: every name, field and operator of a disk selector
//! against Talos's disk-locator environment, with cel-go's overload rules
//! (no implicit conversion between int, uint and double).

use super::parse::{Expr, Lit};
use super::CelError;

/// A CEL type, as cel-go names it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bool`.
    Bool,
    /// `null_type`.
    Null,
    /// `list(T)`.
    List(Box<Type>),
    /// The disk's facts (Talos `block.DiskSpec`).
    Disk,
    /// A discovered volume's facts (Talos `block.DiscoveredVolumeSpec`).
    Volume,
    /// Unknown until run time (an empty list's items).
    Dyn,
}

impl Type {
    /// cel-go's spelling.
    pub fn name(&self) -> String {
        match self {
            Type::Int => "int".into(),
            Type::Uint => "uint".into(),
            Type::Double => "double".into(),
            Type::String => "string".into(),
            Type::Bool => "bool".into(),
            Type::Null => "null_type".into(),
            Type::List(t) => format!("list({})", t.name()),
            Type::Disk => "talos.resource.definitions.block.DiskSpec".into(),
            Type::Volume => "talos.resource.definitions.block.DiscoveredVolumeSpec".into(),
            Type::Dyn => "dyn".into(),
        }
    }

    /// Whether a value of `self` may stand where `other` is wanted.
    fn fits(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Dyn, _) | (_, Type::Dyn) => true,
            (Type::List(a), Type::List(b)) => a.fits(b),
            (a, b) => a == b,
        }
    }
}

/// The type of a field of `disk` (Talos `DiskSpec`), if it has that field.
fn disk_field(name: &str) -> Option<Type> {
    Some(match name {
        "size" | "io_size" | "sector_size" => Type::Uint,
        "readonly" | "cdrom" | "rotational" => Type::Bool,
        "model" | "serial" | "modalias" | "wwid" | "uuid" | "bus_path" | "sub_system"
        | "transport" | "dev_path" | "pretty_size" => Type::String,
        "symlinks" | "secondary_disks" => Type::List(Box::new(Type::String)),
        _ => return None,
    })
}

/// The type of a field of `volume` (Talos `DiscoveredVolumeSpec`).
fn volume_field(name: &str) -> Option<Type> {
    Some(match name {
        "size"
        | "sector_size"
        | "io_size"
        | "block_size"
        | "filesystem_block_size"
        | "probed_size"
        | "partition_index" => Type::Uint,
        "name" | "uuid" | "label" | "partition_uuid" | "partition_type" | "partition_label"
        | "type" | "device_path" | "parent" | "dev_path" | "parent_dev_path" | "pretty_size" => {
            Type::String
        }
        _ => return None,
    })
}

/// Which Talos CEL environment an expression is checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// Disk selectors: `disk`, `system_disk`, size constants.
    DiskLocator,
    /// Existing-volume selectors: `volume`, `disk`, size constants.
    VolumeLocator,
}

/// Size constants of the environment, all uint.
const UNITS: &[&str] = &[
    "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "kB", "MB", "GB", "TB", "PB", "EB",
];

/// Type-checks an expression; returns its type.
pub fn check(e: &Expr, env: Env) -> Result<Type, CelError> {
    Checker {
        env,
        scope: Vec::new(),
    }
    .expr(e)
}

struct Checker {
    env: Env,
    /// Comprehension variables in scope, innermost last.
    scope: Vec<(String, Type)>,
}

fn no_overload(at: usize, op: &str, args: &[Type]) -> CelError {
    let names: Vec<String> = args.iter().map(Type::name).collect();
    CelError::new(
        at,
        format!(
            "found no matching overload for '{op}' applied to '({})'",
            names.join(", ")
        ),
    )
}

impl Checker {
    fn expr(&mut self, e: &Expr) -> Result<Type, CelError> {
        super::deeper(|| self.expr_here(e))
    }

    fn expr_here(&mut self, e: &Expr) -> Result<Type, CelError> {
        match e {
            Expr::Lit(l) => Ok(lit_type(l)),
            Expr::Ident { name, at } => self.ident(name, *at),
            Expr::Select { operand, field, at } => self.select(operand, field, *at),
            Expr::Op { op, args, at } => {
                let types = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>, _>>()?;
                operator(op, &types).ok_or_else(|| no_overload(*at, op, &types))
            }
            Expr::List { items, at } => self.list(items, *at),
            Expr::Call {
                target,
                function,
                args,
                at,
            } => self.call(target.as_deref(), function, args, *at),
        }
    }

    fn ident(&self, name: &str, at: usize) -> Result<Type, CelError> {
        if let Some((_, t)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(t.clone());
        }
        match (name, self.env) {
            ("disk", _) => Ok(Type::Disk),
            ("system_disk", Env::DiskLocator) => Ok(Type::Bool),
            ("volume", Env::VolumeLocator) => Ok(Type::Volume),
            (n, _) if UNITS.contains(&n) => Ok(Type::Uint),
            _ => Err(CelError::new(
                at,
                format!("undeclared reference to '{name}' (in container '')"),
            )),
        }
    }

    fn select(&mut self, operand: &Expr, field: &str, at: usize) -> Result<Type, CelError> {
        match self.expr(operand)? {
            Type::Disk => disk_field(field).ok_or_else(|| undefined(at, field)),
            Type::Volume => volume_field(field).ok_or_else(|| undefined(at, field)),
            Type::Dyn => Ok(Type::Dyn),
            t => Err(CelError::new(
                at,
                format!("type '{}' does not support field selection", t.name()),
            )),
        }
    }

    fn list(&mut self, items: &[Expr], at: usize) -> Result<Type, CelError> {
        let mut elem = Type::Dyn;
        for item in items {
            let t = self.expr(item)?;
            if elem == Type::Dyn {
                elem = t;
            } else if !t.fits(&elem) {
                return Err(CelError::new(
                    at,
                    format!(
                        "list items differ in type: {} and {}",
                        elem.name(),
                        t.name()
                    ),
                ));
            }
        }
        Ok(Type::List(Box::new(elem)))
    }

    fn call(
        &mut self,
        target: Option<&Expr>,
        function: &str,
        args: &[Expr],
        at: usize,
    ) -> Result<Type, CelError> {
        if let Some(t) = target {
            if let Some(r) = self.macro_call(t, function, args, at) {
                return r;
            }
        }
        if target.is_none() && function == "has" {
            return match args {
                [Expr::Select { operand, field, at }] => {
                    self.select(operand, field, *at).map(|_| Type::Bool)
                }
                _ => Err(CelError::new(at, "invalid argument to has() macro")),
            };
        }
        let mut types = Vec::new();
        if let Some(t) = target {
            types.push(self.expr(t)?);
        }
        for a in args {
            types.push(self.expr(a)?);
        }
        function_type(function, target.is_some(), &types)
            .ok_or_else(|| no_overload(at, function, &types))
    }

    /// `list.exists(x, p)`, `all`, `exists_one`, `filter`, `map`.
    fn macro_call(
        &mut self,
        target: &Expr,
        function: &str,
        args: &[Expr],
        at: usize,
    ) -> Option<Result<Type, CelError>> {
        let is_macro = super::parse::is_list_macro(function);
        let [Expr::Ident { name, .. }, body] = args else {
            return None;
        };
        if !is_macro {
            return None;
        }
        Some(self.comprehension(target, function, name, body, at))
    }

    fn comprehension(
        &mut self,
        target: &Expr,
        function: &str,
        var: &str,
        body: &Expr,
        at: usize,
    ) -> Result<Type, CelError> {
        let elem = match self.expr(target)? {
            Type::List(t) => *t,
            Type::Dyn => Type::Dyn,
            t => return Err(no_overload(at, function, &[t])),
        };
        self.scope.push((var.to_string(), elem.clone()));
        let body_t = self.expr(body);
        self.scope.pop();
        let body_t = body_t?;
        match function {
            "map" => Ok(Type::List(Box::new(body_t))),
            _ if !body_t.fits(&Type::Bool) => Err(no_overload(at, function, &[body_t])),
            "filter" => Ok(Type::List(Box::new(elem))),
            _ => Ok(Type::Bool),
        }
    }
}

fn undefined(at: usize, field: &str) -> CelError {
    CelError::new(at, format!("undefined field '{field}'"))
}

fn lit_type(l: &Lit) -> Type {
    match l {
        Lit::Int(_) => Type::Int,
        Lit::Uint(_) => Type::Uint,
        Lit::Double(_) => Type::Double,
        Lit::Str(_) => Type::String,
        Lit::Bool(_) => Type::Bool,
        Lit::Null => Type::Null,
    }
}

fn is_number(t: &Type) -> bool {
    matches!(t, Type::Int | Type::Uint | Type::Double | Type::Dyn)
}

/// The result type of an operator, or `None` when no overload applies.
fn operator(op: &str, a: &[Type]) -> Option<Type> {
    let same = |ok: fn(&Type) -> bool| a.len() == 2 && a[0].fits(&a[1]) && ok(&a[0]) && ok(&a[1]);
    match op {
        "_&&_" | "_||_" => same(|t| t.fits(&Type::Bool)).then_some(Type::Bool),
        "!_" => a[0].fits(&Type::Bool).then_some(Type::Bool),
        "-_" => matches!(a[0], Type::Int | Type::Double | Type::Dyn).then(|| a[0].clone()),
        "_==_" | "_!=_" => (a[0].fits(&a[1]) || a.contains(&Type::Null)).then_some(Type::Bool),
        "_<_" | "_<=_" | "_>_" | "_>=_" => {
            same(|t| is_number(t) || matches!(t, Type::String | Type::Bool)).then_some(Type::Bool)
        }
        "_+_" => same(|t| is_number(t) || matches!(t, Type::String | Type::List(_)))
            .then(|| a[0].clone()),
        "_-_" | "_*_" | "_/_" => same(is_number).then(|| a[0].clone()),
        "_%_" => same(|t| matches!(t, Type::Int | Type::Uint | Type::Dyn)).then(|| a[0].clone()),
        "@in" => match &a[1] {
            Type::List(t) => a[0].fits(t).then_some(Type::Bool),
            Type::Dyn => Some(Type::Bool),
            _ => None,
        },
        "_[_]" => match (&a[0], &a[1]) {
            (Type::List(t), Type::Int | Type::Dyn) => Some((**t).clone()),
            (Type::Dyn, _) => Some(Type::Dyn),
            _ => None,
        },
        "_?_:_" => (a[0].fits(&Type::Bool) && a[1].fits(&a[2])).then(|| a[1].clone()),
        _ => None,
    }
}

/// The result type of a function or method call (receiver first in `a`).
fn function_type(name: &str, method: bool, a: &[Type]) -> Option<Type> {
    let string_pair = a.len() == 2 && a[0].fits(&Type::String) && a[1].fits(&Type::String);
    match (name, method, a) {
        ("startsWith" | "endsWith" | "contains" | "matches", true, _) if string_pair => {
            Some(Type::Bool)
        }
        ("matches", false, _) if string_pair => Some(Type::Bool),
        ("size", _, [Type::String | Type::List(_) | Type::Dyn]) => Some(Type::Int),
        ("int", false, [t]) if is_number(t) || *t == Type::String => Some(Type::Int),
        ("uint", false, [t]) if is_number(t) || *t == Type::String => Some(Type::Uint),
        ("double", false, [t]) if is_number(t) || *t == Type::String => Some(Type::Double),
        ("string", false, [_]) => Some(Type::String),
        _ => None,
    }
}
