//! `sends`: acked sends per second, first into many rooms (each sender in
//! one of --rooms rooms), then into one hot room that every sender shares.
//! Every sender is also a member receiving its room's messages, as a real
//! client is.

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};

use crate::Env;
use crate::cli::SendsArgs;
use crate::report::Phase;
use crate::traffic::{self, Member, SendPlan};

pub async fn run(args: &SendsArgs) -> anyhow::Result<Vec<Phase>> {
    if args.common.raw_ws {
        bail!("sends needs rooms of the real server; --raw-ws serves fanout and idle");
    }
    if args.senders == 0 || args.rooms == 0 || args.rooms > args.senders {
        bail!("--rooms must be between 1 and --senders");
    }
    if args.hot_only && args.many_only {
        bail!("--hot-only and --many-only leave nothing to run");
    }
    let env = Env::new(&args.common).await?;
    let users = env.users(args.senders).await?;
    let mut phases = Vec::new();

    if !args.hot_only {
        // Room k belongs to user k; user i sends into room i % rooms.
        let rooms: Vec<String> = futures::stream::iter(0..args.rooms)
            .map(|k| {
                let (env, users) = (&env, &users);
                async move {
                    env.api
                        .create_room(&env.bases[0], &users[k], &format!("sends {k} {}", env.tag))
                        .await
                }
            })
            .buffered(args.common.http_concurrency.max(1))
            .try_collect()
            .await?;
        futures::stream::iter(users.iter().enumerate())
            .map(|(i, user)| {
                env.api.join(
                    &env.bases[i % env.bases.len()],
                    user,
                    &rooms[i % rooms.len()],
                )
            })
            .buffer_unordered(args.common.http_concurrency.max(1))
            .try_collect::<()>()
            .await?;
        let members = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let room = rooms[i % rooms.len()].clone();
                Member {
                    gateway: i,
                    token: user.token.clone(),
                    rooms: vec![room.clone()],
                    send: Some(SendPlan {
                        room,
                        messages: args.traffic.messages,
                    }),
                }
            })
            .collect();
        phases.push(traffic::run(&env, "many_rooms", members, &args.traffic).await?);
    }

    if !args.many_only {
        let room = env.room(&users, "sends hot").await?;
        let members = users
            .iter()
            .enumerate()
            .map(|(i, user)| Member {
                gateway: i,
                token: user.token.clone(),
                rooms: vec![room.clone()],
                send: Some(SendPlan {
                    room: room.clone(),
                    messages: args.traffic.messages,
                }),
            })
            .collect();
        phases.push(traffic::run(&env, "hot_room", members, &args.traffic).await?);
    }
    Ok(phases)
}
