//! The roles one Postino process can run: the two HTTP APIs and the four pipeline stages.
//! A deployment runs every role in one process (`all`, the default) or spreads them over
//! processes scaled on their own (ARCHITECTURE.md §1).

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// One role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The senders' API.
    Ingest,
    /// The citizens' API.
    Citizen,
    /// The stage deciding where each message goes.
    Router,
    /// The stage writing inboxes and fanning out notifications.
    Inbox,
    /// The push dispatcher.
    Push,
    /// The email dispatcher.
    Email,
}

impl Role {
    /// Every role, in pipeline order.
    pub const ALL: [Role; 6] = [
        Role::Ingest,
        Role::Citizen,
        Role::Router,
        Role::Inbox,
        Role::Push,
        Role::Email,
    ];

    /// How `--roles` names it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Citizen => "citizen",
            Role::Router => "router",
            Role::Inbox => "inbox",
            Role::Push => "push",
            Role::Email => "email",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The roles one process runs: `all`, or a comma-separated subset of [`Role::name`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Roles([bool; Role::ALL.len()]);

impl Roles {
    pub const ALL: Self = Self([true; Role::ALL.len()]);

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim() == "all" {
            return Ok(Self::ALL);
        }
        text.split(',')
            .map(str::trim)
            .map(|name| {
                Role::ALL
                    .into_iter()
                    .find(|role| role.name() == name)
                    .ok_or_else(|| {
                        ConfigError::new(format!(
                            "roles: unknown role {name:?}; use all, or a comma-separated subset of {}",
                            Role::ALL.map(Role::name).join(", ")
                        ))
                    })
            })
            .collect()
    }

    pub fn contains(self, role: Role) -> bool {
        self.0[role.index()]
    }

    /// The roles it holds, in pipeline order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |role| self.contains(*role))
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        let mut on = Self::default();
        for role in roles {
            on.0[role.index()] = true;
        }
        on
    }
}

impl TryFrom<String> for Roles {
    type Error = ConfigError;
    fn try_from(text: String) -> Result<Self, ConfigError> {
        Self::parse(&text)
    }
}

impl From<Roles> for String {
    fn from(roles: Roles) -> String {
        roles.to_string()
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::ALL {
            return f.write_str("all");
        }
        let names: Vec<_> = self.iter().map(Role::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_by_name() {
        let two = Roles::parse("router, inbox").expect("two roles");
        assert_eq!(two, Roles::from_iter([Role::Inbox, Role::Router]));
        assert_eq!(two.to_string(), "router,inbox");
        assert!(two.contains(Role::Router) && !two.contains(Role::Ingest));
        let every = Roles::parse(&Role::ALL.map(Role::name).join(",")).expect("every role");
        assert_eq!(every, Roles::ALL);
        assert_eq!(Roles::ALL.to_string(), "all");
        for bad in ["ingest,mailer", "", "all,router"] {
            let err = Roles::parse(bad).expect_err("refused");
            assert!(err.to_string().contains("unknown role"), "{bad:?}: {err}");
        }
    }
}
