//! `claudemesh dashboard` (issue 18, README "Dashboard"): a local web page of your mesh, served
//! on loopback by [`crate::dashboard`], opened in the browser with a one-time login link.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliError, CliResult, select_mesh};
use crate::client::{ConnectOptions, MeshClient};
use crate::dashboard::{Dashboard, observer_peer, private_temp_dir};
use crate::identity::ConfigDir;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "dashboard", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh dashboard")]
#[argh(example = "claudemesh dashboard --listen 127.0.0.1:8787 --no-open")]
/// open a live web dashboard of your mesh in this machine's browser (loopback only)
pub struct DashboardCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// where to listen, a loopback address (default 127.0.0.1:0, any free port)
    #[argh(option, default = "String::from(\"127.0.0.1:0\")")]
    listen: String,
    /// print the login link without opening a browser
    #[argh(switch)]
    no_open: bool,
}

impl DashboardCmd {
    pub async fn run(self) -> CliResult {
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            CliError::Usage(format!(
                "--listen {} is not an address: give one like 127.0.0.1:8787",
                self.listen
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(CliError::Usage(format!(
                "--listen {addr} is not a loopback address: the dashboard serves this machine only (use 127.0.0.1)"
            )));
        }
        let entry = select_mesh(self.mesh.as_deref())?;
        let options = ConnectOptions {
            config_dir: Some(ConfigDir::from_env()),
            reconnect: true,
            ..ConnectOptions::new(entry.clone(), observer_peer(&entry.display_name))
        };
        let client = MeshClient::connect(options).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::failed(format!(
                "cannot listen on {addr}: {e}; try another --listen"
            ))
        })?;
        let dashboard = Dashboard::start(client, listener)
            .map_err(|e| CliError::failed(format!("cannot start the dashboard: {e}")))?;
        outln!(
            "dashboard of {} as {} on http://{}",
            entry.slug,
            entry.display_name,
            dashboard.addr
        );
        outln!("open (works once): {}", dashboard.login_url);
        if !self.no_open {
            open_browser(&dashboard.login_url);
        }
        tokio::select! {
            _ = dashboard.wait() => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    }
}

/// Opens the login link in the desktop's browser. The link goes through a private file that
/// redirects to it, so the token is not in any process's arguments; the file is removed once
/// the browser had time to read it.
fn open_browser(url: &str) {
    let page = private_temp_dir().and_then(|dir| {
        let file = dir.join("open.html");
        std::fs::write(
            &file,
            format!(
                "<!doctype html><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
                 <meta http-equiv=\"refresh\" content=\"0;url={url}\"><title>claudemesh dashboard</title>"
            ),
        )?;
        Ok((dir, file))
    });
    let (dir, file) = match page {
        Ok(p) => p,
        Err(e) => {
            outln!("cannot prepare the browser ({e}): open the link above yourself");
            return;
        }
    };
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let started = std::process::Command::new(opener)
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        outln!("cannot start {opener}: open the link above yourself");
    }
    remove_later(dir);
}

fn remove_later(dir: PathBuf) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = std::fs::remove_dir_all(dir);
    });
}
