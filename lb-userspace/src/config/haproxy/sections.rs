//! Lines that open sections (`global`, `defaults`, `frontend`, `backend`, `listen`), and
//! the `.if` / `.warning` / ... directives.
use super::{
    bind::bind_list,
    diags::show,
    state::{Kind, Parser, Proxy, ProxySettings, Sect},
    values::bad_name,
};

/// Sections lb reads.
pub(super) const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
];

/// Sections HAProxy has and lb has no use for: their contents are skipped with one warning.
pub(super) const OTHER_SECTIONS: &[&str] = &[
    "userlist",
    "peers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "log-forward",
    "fcgi-app",
];

impl Parser {
    /// `.if` & co, `.warning`, `.alert`, `.notice`, `.diag`.
    pub(super) fn directive(&mut self, args: &[String]) {
        let kw = args[0].as_str();
        match kw {
            ".alert" | ".warning" | ".notice" | ".diag" => {
                if let Some(extra) = args.get(2) {
                    self.d.alert(format!(
                        "Unexpected argument '{}' for '{kw}'. Use quotes if the message should contain spaces.",
                        show(extra)
                    ));
                    return;
                }
                let msg = format!("'{}'.", show(args.get(1).map_or("", |s| s.as_str())));
                match kw {
                    ".alert" => self.d.alert(msg),
                    ".warning" => self.d.warn(msg),
                    _ => {}
                }
            }
            ".if" | ".elif" | ".else" | ".endif" => {
                self.d.alert(format!(
                    "conditional blocks ('{kw}') are not supported by lb yet; keep one configuration per file"
                ));
            }
            _ => self.d.alert(format!("unknown directive '{}'.", show(kw))),
        }
    }

    /// A line whose first word is a section name.
    pub(super) fn section(&mut self, args: &[String]) {
        self.close_section(self.d.line);
        let kw = args[0].as_str();
        self.sect_name = args.get(1).cloned().unwrap_or_else(|| kw.to_string());
        match kw {
            "global" => {
                self.d.too_many(args, 0, 0);
                self.sect = Sect::Global;
            }
            "defaults" => self.defaults_section(args),
            "frontend" => self.proxy_section(Kind::Frontend, args),
            "backend" => self.proxy_section(Kind::Backend, args),
            "resolvers" => {
                self.sect =
                    match super::resolvers::open(&mut self.d, &mut self.global.resolvers, args) {
                        Some(i) => Sect::Resolvers(i),
                        // Its lines would be blamed on the previous section.
                        None => Sect::Other,
                    };
            }
            _ => self.proxy_section(Kind::Listen, args),
        }
    }

    /// `defaults [NAME] [from OTHER]`, also `defaults from OTHER`.
    fn defaults_section(&mut self, args: &[String]) {
        let origin = self.d.here();
        let (name, from) = match args.get(1).map(String::as_str) {
            None => (String::new(), None),
            Some("from") if args.len() == 3 => (String::new(), Some(&args[2])),
            Some(n) => match args.get(2).map(String::as_str) {
                None => (n.to_string(), None),
                Some("from") if args.len() >= 4 => (n.to_string(), Some(&args[3])),
                Some(_) => {
                    self.d.too_many(args, 1, 0);
                    (n.to_string(), None)
                }
            },
        };
        if args.len() > 4 {
            self.d.too_many(args, 0, 3);
        }
        let base = match from {
            Some(f) => self.named_defaults(f, "defaults", &name),
            None => ProxySettings::default(),
        };
        self.defaults.push((name, base, origin));
        let i = self.defaults.len() - 1;
        self.last_defaults = Some(i);
        self.sect = Sect::Defaults(i);
    }

    /// `frontend|backend|listen NAME [ADDRESSES | from DEFAULTS]`.
    fn proxy_section(&mut self, kind: Kind, args: &[String]) {
        let kw = kind.word();
        let origin = self.d.here();
        let Some(name) = args.get(1) else {
            self.d.alert(format!("'{kw}' expects an <id> argument"));
            self.sect = Sect::Other;
            return;
        };
        // The file is refused then; later messages still print the name safely.
        let display = if bad_name(&mut self.d, kw, name) {
            show(name)
        } else {
            name.clone()
        };
        let mut addresses = None;
        let mut from = None;
        match args.get(2).map(String::as_str) {
            None => {}
            Some("from") if args.len() == 4 => from = Some(&args[3]),
            Some(a) if kind.fe() && args.len() == 3 => addresses = Some(a),
            Some(_) if kind.fe() => self.d.alert(format!(
                "'{kw} {}' cannot handle unexpected arguments after the name (one listening address list, or 'from DEFAULTS').",
                show(name)
            )),
            Some(_) => {
                self.d.too_many(args, 1, 0);
            }
        }
        let mut s = match from {
            Some(f) => self.named_defaults(f, kw, name),
            None => self
                .last_defaults
                .map(|i| self.defaults[i].1.clone())
                .unwrap_or_default(),
        };
        // What a proxy writes itself is told apart from what it inherits.
        s.check.inherited();
        s.stats.inherited();
        s.default_backend_own = false;
        s.use_backend = None;
        let mut px = Proxy {
            kind,
            name: display,
            origin,
            s,
            binds: Vec::new(),
            servers: Vec::new(),
        };
        if let Some(a) = addresses {
            // HAProxy 1.x: `frontend main *:80`, as the seed config has it.
            bind_list(&mut self.d, a, &mut px.binds, &mut self.total_binds);
        }
        self.proxies.push(px);
        self.sect = Sect::Proxy(self.proxies.len() - 1);
    }

    /// The settings of the defaults section `name`, which `kw` section `who` inherits.
    fn named_defaults(&mut self, name: &str, kw: &str, who: &str) -> ProxySettings {
        let found: Vec<usize> = (0..self.defaults.len())
            .filter(|&i| self.defaults[i].0 == name)
            .collect();
        match found.as_slice() {
            [] => {
                self.d.alert(format!(
                    "defaults section '{}' not found for {kw} '{}'.",
                    show(name),
                    show(who)
                ));
                ProxySettings::default()
            }
            [i] => self.defaults[*i].1.clone(),
            [a, b, ..] => {
                let (oa, ob) = (self.defaults[*a].2.clone(), self.defaults[*b].2.clone());
                self.d.alert(format!(
                    "ambiguous defaults section name '{}' referenced by {kw} '{}' exists at least at {oa} and {ob}.",
                    show(name),
                    show(who)
                ));
                self.defaults[*a].1.clone()
            }
        }
    }
}
