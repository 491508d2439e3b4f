//! `claudemesh profile` (issue 13): show or change what this member tells about itself.

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::protocol::messages::Profile;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "profile", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh profile")]
#[argh(
    example = "claudemesh profile --role-tag reviewer --avatar 🦀 --capability rust --capability review"
)]
#[argh(example = "claudemesh profile --message-mode inbox")]
/// show your profile, or change it (an empty value clears a field)
pub struct ProfileCmd {
    /// your display name in this mesh (unique)
    #[argh(option)]
    name: Option<String>,
    /// a short role tag, e.g. reviewer
    #[argh(option)]
    role_tag: Option<String>,
    /// a title
    #[argh(option)]
    title: Option<String>,
    /// one line about you
    #[argh(option)]
    bio: Option<String>,
    /// an emoji
    #[argh(option)]
    avatar: Option<String>,
    /// what you can help with (repeat for several; one empty value clears them)
    #[argh(option)]
    capability: Vec<String>,
    /// push (live, default), inbox (held until you check) or off (direct messages refused)
    #[argh(option)]
    message_mode: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the profile
    #[argh(switch)]
    json: bool,
}

impl ProfileCmd {
    pub async fn run(self) -> CliResult {
        if let Some(mode) = &self.message_mode
            && !matches!(mode.as_str(), "push" | "inbox" | "off")
        {
            return Err(CliError::Usage(
                "--message-mode must be push, inbox or off".into(),
            ));
        }
        let patch = Profile {
            display_name: self.name,
            role_tag: self.role_tag,
            title: self.title,
            bio: self.bio,
            avatar: self.avatar,
            capabilities: (!self.capability.is_empty()).then(|| {
                self.capability
                    .into_iter()
                    .filter(|c| !c.is_empty())
                    .collect()
            }),
            message_mode: self.message_mode,
        };
        let change = patch != Profile::default();
        let profile = with_client(self.mesh.as_deref(), async |c| {
            if change {
                c.set_profile(patch).await?;
            }
            Ok(c.my_profile().await?.unwrap_or_default())
        })
        .await?;
        if self.json {
            print_json(&profile);
            return Ok(());
        }
        if profile == Profile::default() {
            outln!("no profile set (see `claudemesh profile --help`)");
            return Ok(());
        }
        for (label, value) in [
            ("name", profile.display_name.clone()),
            ("role tag", profile.role_tag.clone()),
            ("title", profile.title.clone()),
            ("bio", profile.bio.clone()),
            ("avatar", profile.avatar.clone()),
            (
                "capabilities",
                profile.capabilities.as_ref().map(|c| c.join(", ")),
            ),
            (
                "message mode",
                Some(
                    profile
                        .message_mode
                        .clone()
                        .unwrap_or_else(|| "push".into()),
                ),
            ),
        ] {
            if let Some(v) = value {
                outln!("{label:<13} {v}");
            }
        }
        Ok(())
    }
}
