//! `fanout` and `e2e`: one room of M member connections, P of them sending
//! at a fixed rate; every member counts and times the deliveries. `e2e`
//! spreads the members over several gateways, so that most deliveries cross
//! from one gateway to another.

use anyhow::bail;

use crate::Env;
use crate::cli::FanoutArgs;
use crate::report::Phase;
use crate::traffic::{self, Member, SendPlan};

pub async fn run(args: &FanoutArgs, e2e: bool) -> anyhow::Result<Vec<Phase>> {
    if e2e && args.common.gateways.len() < 2 {
        bail!("e2e spreads clients over several gateways: give --gateway at least twice");
    }
    if args.members == 0 || args.senders > args.members {
        bail!("--senders must be at most --members, and --members at least 1");
    }
    let env = Env::new(&args.common).await?;
    let users = env.users(args.members).await?;
    let room = env.room(&users, "fanout").await?;
    // Member i connects to gateway i (modulo their number), so senders,
    // the first members, alternate between gateways too.
    let members = users
        .into_iter()
        .enumerate()
        .map(|(i, user)| Member {
            gateway: i,
            token: user.token,
            rooms: vec![room.clone()],
            send: (i < args.senders).then(|| SendPlan {
                room: room.clone(),
                messages: args.traffic.messages,
            }),
        })
        .collect();
    let name = if e2e { "e2e" } else { "fanout" };
    Ok(vec![
        traffic::run(&env, name, members, &args.traffic).await?,
    ])
}
