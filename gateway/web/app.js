// The chat's web client: one page of plain JavaScript, no dependencies.
// It speaks the public protocol (PROTOCOL.md): the HTTP API under /api/v1
// for accounts, rooms and files, and one WebSocket at /ws for everything
// live. Message text only ever reaches the page through textContent.
'use strict';

(() => {
  const API = '/api/v1';
  const PAGE = 50;
  const MAX_TEXT = 4000;
  const REQUEST_TIMEOUT = 15000;
  const RESUME_TIMEOUT = 60000;
  const TYPING_SEND_EVERY = 3000;
  const TYPING_SHOW_FOR = 5000;
  // The server pings every 20 s, but a page cannot see WebSocket pings:
  // an application ping when idle tells a dead connection from a quiet one.
  const PING_WHEN_IDLE = 20000;
  const SILENCE_LIMIT = 45000;
  const AUTH_LIMIT = 15000;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 30000;
  const STORAGE_KEY = 'chat.session';
  const LINK = /\bhttps?:\/\/[^\s<>"']+/gi;

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  const state = {
    session: null, // {access, refresh, expiresAt, user}
    rooms: new Map(), // room id → room (see roomFrom)
    current: null, // id of the open room
    names: new Map(), // user id → username, for typing and receipts
    presence: new Map(), // user id → 'online' | 'offline'
    pending: new Map(), // client_msg_id → a send not yet acknowledged
    blobs: new Map(), // attachment id → Promise of a blob: URL
    composer: null, // {mode: 'reply' | 'edit', seq}
    msgEls: new Map(), // seq → <li> of the open room
    pendingEls: new Map(), // client_msg_id → <li> of the open room
    ws: null,
    ready: false,
    attempt: 0,
    reconnectAt: 0,
    reconnectTimer: 0,
    lastHeard: 0,
    refs: new Map(), // ref → {resolve, reject} of a request awaiting its reply
    nextRef: 1,
    refreshTimer: 0,
    refreshing: null,
    lastTypingSent: 0,
    readTimer: 0,
    noticeTimer: 0,
  };

  class ApiError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  // ---------------------------------------------------------------- DOM

  // Builds an element. `text` goes through textContent; string children
  // become text nodes (append never parses HTML).
  function h(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const classes = (...names) => names.filter(Boolean).join(' ');

  // Appends `text`, turning http(s) URLs into links; nothing else is ever
  // a link, so `javascript:` and friends stay plain text.
  function appendText(node, text) {
    let last = 0;
    for (const match of text.matchAll(LINK)) {
      // Trailing punctuation belongs to the sentence, not the URL.
      const raw = match[0].replace(/[.,;:!?)\]]+$/, '');
      node.append(text.slice(last, match.index));
      const href = safeUrl(raw);
      node.append(href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer', text: raw }) : raw);
      last = match.index + raw.length;
    }
    node.append(text.slice(last));
    return node;
  }

  function safeUrl(text) {
    try {
      const url = new URL(text);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch {
      return null;
    }
  }

  function newId() {
    // getRandomValues works on plain-http origins too, unlike randomUUID.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  const myId = () => (state.session && state.session.user ? state.session.user.id : null);
  const myName = () => {
    const user = state.session && state.session.user;
    return user ? user.display_name || user.username : '';
  };

  function formatTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function showNotice(text) {
    const notice = $('notice');
    notice.textContent = text;
    notice.hidden = !text;
    clearTimeout(state.noticeTimer);
    if (text) state.noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
  }

  const noticeOf = (error) => showNotice(error && error.message ? error.message : String(error));

  function announce(text) {
    // Screen readers hear new messages of the open room without moving focus.
    $('announcer').textContent = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  }

  // ---------------------------------------------------------------- HTTP

  async function api(method, path, body, retried = false) {
    const headers = {};
    if (state.session) headers.Authorization = `Bearer ${state.session.access}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError('network', 'The server cannot be reached.');
    }
    if (response.status === 401 && state.session && !retried && !path.startsWith('/auth/')) {
      await refreshTokens();
      return api(method, path, body, true);
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(error.code || 'internal', error.message || `The server answered ${response.status}.`);
    }
    return data;
  }

  // ---------------------------------------------------------------- session

  function setSession(reply) {
    const user = reply.user || (state.session && state.session.user) || null;
    state.session = {
      access: reply.access_token,
      refresh: reply.refresh_token,
      expiresAt: Date.now() + reply.expires_in * 1000,
      user,
    };
    saveSession();
    scheduleRefresh();
  }

  function saveSession() {
    // sessionStorage keeps the session across a reload of this tab only.
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(state.session));
    } catch {
      // Storage may be disabled; the session then lives in memory only.
    }
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    if (!state.session) return;
    const life = state.session.expiresAt - Date.now();
    // Well before expiry, so calls and reconnects never carry a dead token.
    const wait = Math.max(0, life - Math.min(60000, life * 0.2));
    state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), wait);
  }

  // One refresh at a time: a refresh token is single-use, and using it twice
  // revokes the whole family (every session of this login).
  function refreshTokens() {
    if (state.refreshing) return state.refreshing;
    state.refreshing = (async () => {
      const session = state.session;
      if (!session) throw new ApiError('unauthorized', 'Signed out.');
      let response;
      try {
        response = await fetch(`${API}/auth/refresh`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ refresh_token: session.refresh }),
        });
      } catch {
        state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), 10000);
        throw new ApiError('network', 'The server cannot be reached.');
      }
      if (!response.ok) {
        if (response.status >= 400 && response.status < 500) {
          signOut('Your session has ended. Please log in again.');
          throw new ApiError('unauthorized', 'Your session has ended.');
        }
        state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), 10000);
        throw new ApiError('unavailable', 'The server is unavailable.');
      }
      if (state.session === session) setSession(await response.json());
    })().finally(() => {
      state.refreshing = null;
    });
    return state.refreshing;
  }

  function enter() {
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    $('me-name').textContent = myName();
    scheduleRefresh();
    renderRooms();
    renderRoom();
    connect();
  }

  function signOut(message) {
    const session = state.session;
    state.session = null;
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // Nothing stored.
    }
    clearTimeout(state.refreshTimer);
    clearTimeout(state.reconnectTimer);
    const ws = state.ws;
    state.ws = null;
    state.ready = false;
    if (ws) ws.close(1000);
    for (const waiter of state.refs.values()) waiter.reject(new ApiError('disconnected', 'Signed out.'));
    state.refs.clear();
    for (const url of state.blobs.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
    state.blobs.clear();
    state.rooms.clear();
    state.pending.clear();
    state.presence.clear();
    state.current = null;
    state.composer = null;
    $('app-view').hidden = true;
    $('login-view').hidden = false;
    $('auth-error').textContent = message || '';
    $('auth-password').value = '';
    $('auth-username').focus();
    return session;
  }

  // ---------------------------------------------------------------- WebSocket

  function setConn(kind) {
    const label = $('conn-state');
    label.dataset.state = kind;
    document.body.dataset.conn = kind;
    const texts = {
      connecting: 'Connecting…',
      online: 'Connected',
      reconnecting: `Reconnecting in ${Math.max(1, Math.ceil((state.reconnectAt - Date.now()) / 1000))} s…`,
      offline: 'Disconnected: your account is banned or disabled',
    };
    label.textContent = texts[kind];
    $('reconnect-now').hidden = kind !== 'reconnecting';
    updateComposer();
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (!state.session || state.ws) return;
    setConn('connecting');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws`);
    state.ws = ws;
    state.lastHeard = Date.now();
    // Browsers cannot set an Authorization header on a WebSocket: the token
    // goes in the first frame.
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', token: state.session.access })));
    ws.addEventListener('message', (event) => {
      if (state.ws !== ws) return;
      state.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handleFrame(frame);
    });
    ws.addEventListener('close', (event) => {
      if (state.ws === ws) dropped(event.code);
    });
  }

  function dropped(code) {
    state.ws = null;
    state.ready = false;
    for (const waiter of state.refs.values()) waiter.reject(new ApiError('disconnected', 'The connection was lost.'));
    state.refs.clear();
    for (const room of state.rooms.values()) room.resuming = false;
    if (!state.session) return;
    if (code === 4003) {
      setConn('offline');
      return;
    }
    if (code === 4001) {
      // The access token expired or was refused: a fresh one, then retry.
      refreshTokens().then(scheduleReconnect, scheduleReconnect);
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (!state.session || state.ws) return;
    // Exponential back-off with jitter, so a restarted gateway is not hit
    // by every client at the same instant.
    const ceiling = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** Math.min(state.attempt, 16));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    state.attempt += 1;
    state.reconnectAt = Date.now() + delay;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
    setConn('reconnecting');
  }

  function sendFrame(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  // Sends a frame with a fresh `ref`; resolves with the reply echoing it.
  function request(frame, timeout = REQUEST_TIMEOUT) {
    return new Promise((resolve, reject) => {
      if (!state.ready) {
        reject(new ApiError('disconnected', 'Not connected.'));
        return;
      }
      const ref = `r${state.nextRef++}`;
      const timer = setTimeout(() => {
        state.refs.delete(ref);
        reject(new ApiError('timeout', 'The server did not answer.'));
      }, timeout);
      state.refs.set(ref, {
        resolve: (value) => { clearTimeout(timer); resolve(value); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      sendFrame({ ...frame, ref });
    });
  }

  setInterval(() => {
    const ws = state.ws;
    if (!ws) {
      if (document.body.dataset.conn === 'reconnecting') setConn('reconnecting');
      return;
    }
    const silent = Date.now() - state.lastHeard;
    if (silent > (state.ready ? SILENCE_LIMIT : AUTH_LIMIT)) {
      // Dead without a close: give up on it at once (its late close event
      // is ignored, as it is no longer state.ws).
      state.ws = null;
      ws.close();
      dropped(1006);
    } else if (state.ready && silent > PING_WHEN_IDLE) {
      sendFrame({ type: 'ping' });
    }
  }, 1000);

  window.addEventListener('online', () => {
    if (state.session && !state.ws) {
      state.attempt = 0;
      connect();
    }
  });

  function handleFrame(frame) {
    const waiter = frame.ref !== undefined && state.refs.get(frame.ref);
    if (waiter) {
      state.refs.delete(frame.ref);
      if (frame.type === 'error') waiter.reject(new ApiError(frame.code, frame.message));
      else waiter.resolve(frame);
      return;
    }
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  }

  const handlers = {
    ready(f) {
      state.ready = true;
      state.attempt = 0;
      state.session.user = f.user;
      saveSession();
      state.names.set(f.user.id, f.user.username);
      $('me-name').textContent = myName();
      setConn('online');
      const listed = new Set();
      for (const r of f.rooms) {
        const room = roomFrom({ id: r.id, last_seq: r.last_seq });
        room.last_read_seq = r.last_read_seq;
        listed.add(r.id);
      }
      for (const id of [...state.rooms.keys()]) {
        if (!listed.has(id)) removeRoom(id, 'You are no longer a member of this room.');
      }
      for (const n of f.notifications || []) handlers.notification(n);
      renderRooms();
      loadRooms().catch(noticeOf);
      // Everything missed while away, then the sends that never got an ack
      // (the same client_msg_id, so the server creates nothing twice).
      resume([...state.rooms.values()]).then(() => {
        const room = state.rooms.get(state.current);
        if (room) refreshLatest(room);
      });
      for (const p of state.pending.values()) if (!p.failed) transmit(p);
      scheduleRead();
    },
    message(f) {
      addMessage(f.room, f.message, true);
    },
    message_edited(f) {
      updateMessage(f.room, f.message);
    },
    message_deleted(f) {
      const room = state.rooms.get(f.room);
      const m = room && room.messages.get(f.seq);
      if (m) updateMessage(f.room, { ...m, deleted: true, text: '', attachment: undefined });
    },
    typing(f) {
      const room = state.rooms.get(f.room);
      if (!room || f.user_id === myId()) return;
      state.names.set(f.user_id, f.username);
      room.typing.set(f.user_id, Date.now() + TYPING_SHOW_FOR);
      renderTyping();
      setTimeout(renderTyping, TYPING_SHOW_FOR + 100);
    },
    read(f) {
      const room = state.rooms.get(f.room);
      if (!room) return;
      if (f.user_id === myId()) {
        // Read on another of my devices.
        room.last_read_seq = Math.max(room.last_read_seq, f.seq);
        renderRooms();
        return;
      }
      room.readers.set(f.user_id, Math.max(room.readers.get(f.user_id) || 0, f.seq));
      if (room.id === state.current) renderReceipts(room);
    },
    presence(f) {
      setPresence(f.user_id, f.status);
    },
    member_joined(f) {
      const room = state.rooms.get(f.room);
      if (!room) return;
      if (f.username) state.names.set(f.user_id, f.username);
      if (room.members && !room.members.some((m) => m.user_id === f.user_id)) {
        room.members.push({ user_id: f.user_id, username: f.username || f.user_id, role: 'member' });
      }
      if (room.id === state.current) {
        renderMembers(room);
        // Presence events only cover people who already shared a room with
        // us when their status changed: ask about the newcomer.
        queryPresence();
      }
    },
    member_left(f) {
      const room = state.rooms.get(f.room);
      if (!room) return;
      if (room.members) room.members = room.members.filter((m) => m.user_id !== f.user_id);
      room.readers.delete(f.user_id);
      if (room.id === state.current) {
        renderMembers(room);
        renderReceipts(room);
      }
    },
    room_added(f) {
      roomFrom({ id: f.room, last_seq: f.last_seq });
      renderRooms();
      loadRooms().catch(noticeOf);
    },
    room_removed(f) {
      const room = state.rooms.get(f.room);
      const name = room ? roomLabel(room) : 'a room';
      const why = { left: `You left ${name}.`, kicked: `You were removed from ${name}.`, banned: `You were banned from ${name}.` };
      removeRoom(f.room, why[f.reason] || `You are no longer in ${name}.`);
    },
    muted(f) {
      const room = state.rooms.get(f.room);
      if (!room) return;
      room.mutedUntil = f.until || 'forever';
      clearTimeout(room.muteTimer);
      if (f.until) {
        const left = new Date(f.until).getTime() - Date.now();
        room.muteTimer = setTimeout(() => handlers.unmuted({ room: f.room }), Math.max(0, left));
      }
      updateComposer();
    },
    unmuted(f) {
      const room = state.rooms.get(f.room);
      if (!room) return;
      room.mutedUntil = null;
      clearTimeout(room.muteTimer);
      updateComposer();
    },
    notification(f) {
      const room = state.rooms.get(f.room);
      if (!room || room.id === state.current) return;
      room.mention = true;
      renderRooms();
      const what = f.kind === 'dm' ? 'sent you a direct message' : `mentioned you in ${roomLabel(room)}`;
      announce(`${f.from_name || 'Someone'} ${what}`);
    },
    resume_truncated(f) {
      const room = state.rooms.get(f.room);
      if (room) catchUp(room);
    },
    resync() {
      // The gateway may have dropped live events: ask for what we lack.
      resume([...state.rooms.values()]);
    },
    error(f) {
      showNotice(f.message || 'The server reported an error.');
    },
  };

  // ---------------------------------------------------------------- rooms

  function roomFrom(data) {
    let room = state.rooms.get(data.id);
    if (!room) {
      room = {
        id: data.id,
        name: '',
        kind: 'group',
        visibility: 'private',
        role: 'member',
        last_seq: 0,
        last_read_seq: 0,
        // The messages this page holds, by seq. Keyed by seq, so a message
        // delivered twice (ack, event, resume, history) is shown once.
        messages: new Map(),
        loaded: false, // holds the latest page and everything after it
        loading: null,
        lastSeq: 0, // every seq up to this one is held (once loaded)
        hasMore: false, // older history exists on the server
        olderLoading: false,
        resuming: false,
        catching: false,
        readers: new Map(), // user id → the seq they have read
        typing: new Map(), // user id → when their typing indicator ends
        members: null,
        peer: null, // the other person of a direct-message room
        mutedUntil: null,
        muteTimer: 0,
        mention: false,
      };
      state.rooms.set(data.id, room);
    }
    for (const key of ['name', 'kind', 'visibility', 'role']) if (data[key] !== undefined) room[key] = data[key];
    if (typeof data.last_seq === 'number') room.last_seq = Math.max(room.last_seq, data.last_seq);
    return room;
  }

  const unreadOf = (room) => Math.max(0, room.last_seq - room.last_read_seq);

  function roomLabel(room) {
    if (room.kind === 'dm') {
      const me = state.session && state.session.user ? state.session.user.username : '';
      const other = room.name.split(' & ').find((n) => n !== me);
      return other || room.name || 'Direct message';
    }
    return room.name || 'Loading…';
  }

  async function loadRooms() {
    const data = await api('GET', '/rooms');
    for (const r of data.rooms) {
      const room = roomFrom(r);
      room.last_read_seq = Math.max(room.last_read_seq, r.last_read_seq);
    }
    renderRooms();
    if (state.current) renderRoomHead();
    // A direct-message room shows the other person's presence.
    const dms = [...state.rooms.values()].filter((r) => r.kind === 'dm' && !r.peer);
    await Promise.all(dms.map((room) => loadMembers(room).catch(() => {})));
    renderRooms();
    queryPresence();
  }

  async function loadMembers(room) {
    const data = await api('GET', `/rooms/${enc(room.id)}/members`);
    room.members = data.members;
    for (const m of data.members) {
      state.names.set(m.user_id, m.username);
      state.presence.set(m.user_id, m.status);
      if (room.kind === 'dm' && m.user_id !== myId()) room.peer = m.user_id;
    }
    if (room.id === state.current) {
      renderMembers(room);
      renderReceipts(room);
    }
  }

  function queryPresence() {
    const ids = new Set();
    for (const room of state.rooms.values()) if (room.peer) ids.add(room.peer);
    const current = state.rooms.get(state.current);
    if (current && current.members) for (const m of current.members) ids.add(m.user_id);
    ids.delete(myId());
    if (!ids.size) return;
    request({ type: 'presence', user_ids: [...ids] })
      .then((reply) => {
        for (const p of reply.users || []) setPresence(p.user_id, p.status);
      })
      .catch(() => {});
  }

  function setPresence(userId, status) {
    state.presence.set(userId, status);
    for (const dot of document.querySelectorAll(`.dot[data-user-id="${CSS.escape(userId)}"]`)) paintDot(dot, status);
  }

  function presenceDot(userId) {
    const dot = h('span', { class: 'dot', role: 'img', dataset: { userId } });
    paintDot(dot, state.presence.get(userId) || 'offline');
    return dot;
  }

  function paintDot(dot, status) {
    dot.dataset.status = status;
    dot.setAttribute('aria-label', status);
    dot.title = status;
  }

  function removeRoom(id, why) {
    const room = state.rooms.get(id);
    if (!room) return;
    state.rooms.delete(id);
    clearTimeout(room.muteTimer);
    for (const [cid, p] of state.pending) if (p.room === id) state.pending.delete(cid);
    if (state.current === id) {
      state.current = null;
      renderRoom();
    }
    renderRooms();
    if (why) showNotice(why);
  }

  function renderRooms() {
    const list = $('room-list');
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.room : null;
    const rooms = [...state.rooms.values()].sort((a, b) =>
      a.kind === b.kind ? roomLabel(a).localeCompare(roomLabel(b)) : a.kind === 'group' ? -1 : 1);
    list.replaceChildren(...rooms.map((room) => {
      const open = room.id === state.current;
      const unread = open && document.visibilityState === 'visible' ? 0 : unreadOf(room);
      const mark = room.kind === 'dm' && room.peer
        ? presenceDot(room.peer)
        : h('span', { class: 'room-mark', 'aria-hidden': 'true', text: room.kind === 'dm' ? '@' : room.visibility === 'public' ? '#' : '⚿' });
      const button = h('button', {
        type: 'button',
        class: 'room-button',
        dataset: { room: room.id },
        'aria-current': open ? 'page' : null,
        onclick: () => openRoom(room.id),
      },
      mark,
      h('span', { class: 'room-name', text: roomLabel(room) }),
      room.mention ? h('span', { class: 'mention', text: '@', title: 'You were mentioned' }) : null,
      unread ? h('span', { class: 'badge', text: String(unread), 'aria-label': `${unread} unread` }) : null);
      return h('li', {}, button);
    }));
    if (focused) {
      const again = list.querySelector(`[data-room="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function openRoom(id) {
    const room = state.rooms.get(id);
    if (!room) return;
    // The room being left was read up to now: say so before the debounced
    // read would apply to the next room instead.
    clearTimeout(state.readTimer);
    markRead();
    state.current = id;
    room.mention = false;
    state.composer = null;
    document.body.classList.remove('show-sidebar');
    $('toggle-sidebar').setAttribute('aria-expanded', 'false');
    renderRoom();
    renderRooms();
    if (!room.loaded) {
      loadLatest(room)
        .then(() => {
          if (state.current !== id) return;
          renderRoom();
          scheduleRead();
        })
        .catch(noticeOf);
    }
    loadMembers(room).then(queryPresence).catch(() => {});
    scheduleRead();
    $('composer-input').focus();
  }

  function renderRoomHead() {
    const room = state.rooms.get(state.current);
    $('room-title').textContent = room ? roomLabel(room) : 'Pick a room';
    $('leave-room').disabled = !room || room.kind === 'dm';
    $('toggle-members').disabled = !room;
  }

  // Rebuilds the open room's view from what the page holds.
  function renderRoom() {
    const room = state.rooms.get(state.current);
    renderRoomHead();
    const list = $('message-list');
    list.replaceChildren();
    state.msgEls.clear();
    state.pendingEls.clear();
    if (room) {
      for (const seq of [...room.messages.keys()].sort((a, b) => a - b)) renderMessage(room, room.messages.get(seq), false);
      for (const p of state.pending.values()) if (p.room === room.id) renderPending(p);
      renderReceipts(room);
      renderMembers(room);
    } else {
      $('member-list').replaceChildren();
      $('add-member-form').hidden = true;
    }
    updateOlder(room);
    renderTyping();
    renderComposerContext();
    updateComposer();
    scrollToBottom();
  }

  function updateOlder(room) {
    $('load-older').hidden = !room || !room.loaded || !room.hasMore;
    $('empty-room').hidden = !room || !room.loaded || room.messages.size > 0 || state.pendingEls.size > 0;
  }

  // ---------------------------------------------------------------- messages

  async function loadLatest(room) {
    if (room.loaded) return;
    if (room.loading) {
      await room.loading;
      return;
    }
    room.loading = (async () => {
      try {
        const page = await api('GET', `/rooms/${enc(room.id)}/messages?limit=${PAGE}`);
        for (const m of page.messages) room.messages.set(m.seq, m);
        room.lastSeq = page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
        room.hasMore = page.has_more;
        room.loaded = true;
        // Events that came in while the page was on its way carry on from it.
        advance(room);
        room.last_seq = Math.max(room.last_seq, room.lastSeq);
        if (hasGap(room)) resume([room]);
      } catch (error) {
        room.messages.clear();
        throw error;
      } finally {
        room.loading = null;
      }
    })();
    await room.loading;
  }

  async function loadOlder(room) {
    if (!room.loaded || !room.hasMore || room.olderLoading) return;
    room.olderLoading = true;
    try {
      let oldest = Infinity;
      for (const seq of room.messages.keys()) oldest = Math.min(oldest, seq);
      const page = await api('GET', `/rooms/${enc(room.id)}/messages?before=${oldest}&limit=${PAGE}`);
      const scroller = $('scroller');
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const m of page.messages) {
        room.messages.set(m.seq, m);
        if (room.id === state.current) renderMessage(room, m, false);
      }
      room.hasMore = page.has_more;
      if (room.id === state.current) {
        // Keep the reader's place while older messages grow above it.
        scroller.scrollTop = scroller.scrollHeight - fromBottom;
        renderReceipts(room);
        updateOlder(room);
      }
    } catch (error) {
      noticeOf(error);
    } finally {
      room.olderLoading = false;
    }
  }

  // Fetches everything after lastSeq over HTTP: after a truncated resume,
  // or when a gap is still open after one.
  async function catchUp(room) {
    if (room.catching || !room.loaded) return;
    room.catching = true;
    try {
      for (;;) {
        const page = await api('GET', `/rooms/${enc(room.id)}/messages?after=${room.lastSeq}&limit=100`);
        for (const m of page.messages) addMessage(room.id, m, false);
        if (!page.has_more || !page.messages.length) break;
      }
    } catch (error) {
      noticeOf(error);
    } finally {
      room.catching = false;
    }
  }

  // Re-reads the open room's latest page after a reconnect: a resume
  // replays new messages only, not edits or recalls made meanwhile.
  async function refreshLatest(room) {
    if (!room.loaded) return;
    try {
      const page = await api('GET', `/rooms/${enc(room.id)}/messages?limit=${PAGE}`);
      for (const m of page.messages) {
        const held = room.messages.get(m.seq);
        if (held && !same(held, m)) updateMessage(room.id, m);
        else if (!held && m.seq > room.lastSeq) addMessage(room.id, m, false);
      }
    } catch {
      // The next reconnect tries again.
    }
  }

  function resume(rooms) {
    const wanted = rooms.filter((r) => r.loaded && !r.resuming && state.rooms.has(r.id));
    if (!wanted.length || !state.ready) return Promise.resolve();
    const positions = {};
    for (const room of wanted) {
      positions[room.id] = room.lastSeq;
      room.resuming = true;
    }
    return request({ type: 'resume', rooms: positions }, RESUME_TIMEOUT)
      .catch(() => {})
      .finally(() => {
        for (const room of wanted) {
          room.resuming = false;
          if (hasGap(room) && state.ready) catchUp(room);
        }
      });
  }

  // Whether two copies of a message look the same on screen.
  const same = (a, b) => a.text === b.text && a.deleted === b.deleted && a.edited_at === b.edited_at;

  function advance(room) {
    while (room.messages.has(room.lastSeq + 1)) room.lastSeq += 1;
  }

  function hasGap(room) {
    for (const seq of room.messages.keys()) if (seq > room.lastSeq) return true;
    return false;
  }

  function addMessage(roomId, m, live) {
    const room = state.rooms.get(roomId);
    if (!room || !m) return;
    const mine = m.sender_id === myId();
    if (mine) settlePending(m.client_msg_id);
    room.last_seq = Math.max(room.last_seq, m.seq);
    if (mine) room.last_read_seq = Math.max(room.last_read_seq, m.seq);
    if (!mine) {
      // Sending moves the sender's read position too (without a `read`
      // event): they have seen what came before their message.
      room.readers.set(m.sender_id, Math.max(room.readers.get(m.sender_id) || 0, m.seq));
    }
    const held = room.messages.get(m.seq);
    const known = held !== undefined;
    if (room.loaded || room.loading) {
      room.messages.set(m.seq, m);
      if (room.loaded) {
        advance(room);
        // A seq jump means events were missed: ask for them.
        if (live && !room.resuming && !room.catching && hasGap(room)) resume([room]);
      }
      // A message delivered again (its ack, then its event) keeps its
      // element, and with it the focus of a keyboard user.
      if (room.id === state.current && !(known && same(held, m))) {
        renderMessage(room, m, true);
        renderReceipts(room);
        updateOlder(room);
      }
    }
    if (live && !known && !mine) {
      room.typing.delete(m.sender_id);
      if (room.id === state.current) {
        renderTyping();
        announce(`${m.sender_name}: ${m.deleted ? 'recalled message' : m.text || (m.attachment ? m.attachment.filename : '')}`);
        scheduleRead();
      }
    }
    renderRooms();
  }

  function updateMessage(roomId, m) {
    const room = state.rooms.get(roomId);
    if (!room || !room.messages.has(m.seq)) return;
    room.messages.set(m.seq, m);
    if (room.id !== state.current) return;
    renderMessage(room, m, false);
    // Quotes of it show its new text.
    for (const [seq, other] of room.messages) if (other.reply_to === m.seq && state.msgEls.has(seq)) renderMessage(room, other, false);
    renderReceipts(room);
  }

  function isNearBottom() {
    const s = $('scroller');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    const s = $('scroller');
    s.scrollTop = s.scrollHeight;
  }

  // Puts a message's element in seq order; pending sends stay last.
  function place(el, seq) {
    const list = $('message-list');
    let before = null;
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.dataset.seq === undefined || Number(node.dataset.seq) > seq) before = node;
      else break;
    }
    list.insertBefore(el, before);
  }

  function renderMessage(room, m, follow) {
    const stick = follow && (isNearBottom() || m.sender_id === myId());
    const el = messageEl(room, m);
    const old = state.msgEls.get(m.seq);
    if (old) old.replaceWith(el);
    else place(el, m.seq);
    state.msgEls.set(m.seq, el);
    if (stick) scrollToBottom();
  }

  function messageEl(room, m) {
    const mine = m.sender_id === myId();
    const li = h('li', {
      class: classes('msg', mine && 'own', m.deleted && 'deleted', m.attachment && 'file'),
      dataset: { room: room.id, seq: String(m.seq), sender: m.sender_id },
    });
    li.append(h('div', { class: 'meta' },
      h('span', { class: 'sender', text: m.sender_name || state.names.get(m.sender_id) || 'Someone' }),
      h('time', { datetime: m.created_at, title: new Date(m.created_at).toLocaleString(), text: formatTime(m.created_at) }),
      m.edited_at && !m.deleted ? h('span', { class: 'edited', text: '(edited)' }) : null));
    if (m.deleted) {
      li.append(h('p', { class: 'tombstone', text: 'Message recalled' }));
    } else {
      if (typeof m.reply_to === 'number') li.append(quoteEl(room, m.reply_to));
      if (m.text) li.append(appendText(h('p', { class: 'msg-text' }), m.text));
      if (m.attachment) li.append(attachmentEl(m.attachment));
      li.append(actionsEl(room, m, mine));
    }
    li.append(h('div', { class: 'receipts' }));
    return li;
  }

  function snippet(m) {
    if (m.deleted) return 'a recalled message';
    const text = m.text || (m.attachment ? `📎 ${m.attachment.filename}` : '');
    return text.length > 80 ? `${text.slice(0, 80)}…` : text;
  }

  function quoteEl(room, seq) {
    const target = room.messages.get(seq);
    const text = target ? `${target.sender_name}: ${snippet(target)}` : `message #${seq}`;
    return h('button', {
      type: 'button',
      class: 'quote',
      text: `↪ ${text}`,
      'aria-label': `In reply to ${text}`,
      onclick: () => jumpTo(room, seq),
    });
  }

  async function jumpTo(room, seq) {
    while (!state.msgEls.has(seq) && room.hasMore && room.id === state.current) {
      const before = room.messages.size;
      await loadOlder(room);
      if (room.messages.size === before) break;
    }
    const el = state.msgEls.get(seq);
    if (!el) return;
    el.scrollIntoView({ block: 'center' });
    el.classList.add('highlight');
    setTimeout(() => el.classList.remove('highlight'), 1500);
  }

  function actionsEl(room, m, mine) {
    const who = m.sender_name || 'this message';
    const moderator = room.role === 'owner' || room.role === 'admin';
    const group = h('div', { class: 'actions', role: 'group', 'aria-label': 'Message actions' });
    group.append(h('button', { type: 'button', class: 'link reply', 'aria-label': `Reply to ${who}`, text: 'Reply', onclick: () => startComposer('reply', m.seq) }));
    if (mine && m.text) {
      group.append(h('button', { type: 'button', class: 'link edit', 'aria-label': 'Edit your message', text: 'Edit', onclick: () => startComposer('edit', m.seq) }));
    }
    if (mine || moderator) {
      group.append(h('button', {
        type: 'button',
        class: 'link recall',
        'aria-label': mine ? 'Recall your message' : `Remove the message of ${who}`,
        text: mine ? 'Recall' : 'Remove',
        onclick: () => recall(room, m.seq),
      }));
    }
    return group;
  }

  function recall(room, seq) {
    request({ type: 'delete', room: room.id, seq })
      .then((ack) => {
        if (ack.message) updateMessage(room.id, ack.message);
      })
      .catch(noticeOf);
  }

  const isImage = (a) => a.content_type.startsWith('image/') && !a.content_type.startsWith('image/svg');

  function attachmentEl(a) {
    const box = h('div', { class: 'attachment' });
    if (isImage(a)) {
      const img = h('img', { class: 'thumb', alt: a.filename, dataset: { attachment: a.id } });
      attachmentUrl(a.id).then((url) => { img.src = url; }, () => img.replaceWith(h('span', { class: 'error', text: 'The image could not be loaded.' })));
      box.append(img);
    }
    box.append(h('button', {
      type: 'button',
      class: 'secondary download',
      dataset: { attachment: a.id },
      text: `Download ${a.filename} (${formatSize(a.size)})`,
      onclick: () => download(a),
    }));
    return box;
  }

  // Attachments need the bearer token, which an <img src> or a plain link
  // cannot send: fetch them and hand the page a blob: URL instead.
  function attachmentUrl(id) {
    if (!state.blobs.has(id)) {
      const url = fetchAttachment(id, false);
      url.catch(() => state.blobs.delete(id));
      state.blobs.set(id, url);
    }
    return state.blobs.get(id);
  }

  async function fetchAttachment(id, retried) {
    const response = await fetch(`${API}/attachments/${enc(id)}`, {
      headers: { Authorization: `Bearer ${state.session.access}` },
    });
    if (response.status === 401 && !retried) {
      await refreshTokens();
      return fetchAttachment(id, true);
    }
    if (!response.ok) throw new ApiError('download', `The download failed (${response.status}).`);
    return URL.createObjectURL(await response.blob());
  }

  function download(a) {
    attachmentUrl(a.id)
      .then((url) => {
        const link = h('a', { href: url, download: a.filename, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
      })
      .catch(noticeOf);
  }

  function renderReceipts(room) {
    if (room.id !== state.current) return;
    for (const el of state.msgEls.values()) el.lastElementChild.textContent = '';
    const seqs = [...state.msgEls.keys()].sort((a, b) => a - b);
    const bySeq = new Map();
    for (const [userId, readSeq] of room.readers) {
      // The last message on screen that this reader has seen, not counting
      // their own.
      let at = null;
      for (const seq of seqs) if (seq <= readSeq && room.messages.get(seq).sender_id !== userId) at = seq;
      if (at === null) continue;
      if (!bySeq.has(at)) bySeq.set(at, []);
      bySeq.get(at).push(state.names.get(userId) || 'someone');
    }
    for (const [seq, names] of bySeq) state.msgEls.get(seq).lastElementChild.textContent = `Seen by ${names.sort().join(', ')}`;
  }

  function renderTyping() {
    const room = state.rooms.get(state.current);
    const now = Date.now();
    const names = [];
    if (room) {
      for (const [userId, until] of room.typing) {
        if (until > now) names.push(state.names.get(userId) || 'Someone');
        else room.typing.delete(userId);
      }
    }
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    $('typing').textContent = text;
  }

  function scheduleRead() {
    clearTimeout(state.readTimer);
    state.readTimer = setTimeout(markRead, 300);
  }

  // Tells the server (and so the other members) how far the open room has
  // been read, when the page is actually on screen.
  function markRead() {
    const room = state.rooms.get(state.current);
    if (!room || !room.loaded || !state.ready || document.visibilityState !== 'visible') return;
    const seq = room.lastSeq;
    const before = room.last_read_seq;
    if (seq <= before) return;
    room.last_read_seq = seq;
    renderRooms();
    request({ type: 'read', room: room.id, seq }).catch(() => {
      if (room.last_read_seq === seq) room.last_read_seq = before;
    });
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') scheduleRead();
    renderRooms();
  });
  window.addEventListener('focus', scheduleRead);

  // ---------------------------------------------------------------- sending

  function sendMessage(roomId, text, extra = {}) {
    const p = { room: roomId, text, client_msg_id: newId(), ...extra, failed: null, inflight: false };
    state.pending.set(p.client_msg_id, p);
    if (roomId === state.current) {
      renderPending(p);
      updateOlder(state.rooms.get(roomId));
      scrollToBottom();
    }
    transmit(p);
  }

  // Sends (or sends again) a pending message. Safe to repeat: the server
  // acknowledges a repeated client_msg_id with the original message.
  function transmit(p) {
    if (!state.ready || p.inflight || !state.pending.has(p.client_msg_id)) return;
    p.inflight = true;
    const frame = { type: 'send', room: p.room, text: p.text, client_msg_id: p.client_msg_id };
    if (p.reply_to) frame.reply_to = p.reply_to;
    if (p.attachment_id) frame.attachment_id = p.attachment_id;
    request(frame)
      .then((ack) => {
        p.inflight = false;
        // Not `live`: the ack may overtake other members' events of earlier
        // seqs, which is no gap; the message event that follows checks.
        addMessage(p.room, ack.message, false);
      })
      .catch((error) => {
        p.inflight = false;
        if (error.code === 'disconnected') return; // sent again on the next `ready`
        if (['timeout', 'rate_limited', 'unavailable'].includes(error.code)) {
          setTimeout(() => transmit(p), 2000);
          return;
        }
        if (error.code === 'muted') handlers.muted({ room: p.room, until: null });
        p.failed = error.message;
        renderPending(p);
      });
  }

  function settlePending(clientMsgId) {
    if (!state.pending.delete(clientMsgId)) return;
    const el = state.pendingEls.get(clientMsgId);
    if (el) el.remove();
    state.pendingEls.delete(clientMsgId);
  }

  function renderPending(p) {
    if (p.room !== state.current || !state.pending.has(p.client_msg_id)) return;
    const li = h('li', { class: classes('msg own pending', p.failed && 'failed'), dataset: { clientMsgId: p.client_msg_id } });
    li.append(h('div', { class: 'meta' },
      h('span', { class: 'sender', text: myName() }),
      h('span', { class: 'state', text: p.failed ? `Not sent: ${p.failed}` : 'Sending…' })));
    if (p.text) li.append(appendText(h('p', { class: 'msg-text' }), p.text));
    if (p.filename) li.append(h('p', { class: 'hint', text: `📎 ${p.filename}` }));
    if (p.failed) {
      li.append(h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'link', text: 'Try again', onclick: () => { p.failed = null; renderPending(p); transmit(p); } }),
        h('button', { type: 'button', class: 'link', text: 'Discard', onclick: () => settlePending(p.client_msg_id) })));
    }
    const old = state.pendingEls.get(p.client_msg_id);
    if (old) old.replaceWith(li);
    else $('message-list').append(li);
    state.pendingEls.set(p.client_msg_id, li);
  }

  function startComposer(mode, seq) {
    const room = state.rooms.get(state.current);
    const m = room && room.messages.get(seq);
    if (!m) return;
    state.composer = { mode, seq };
    const input = $('composer-input');
    if (mode === 'edit') input.value = m.text;
    renderComposerContext();
    input.focus();
  }

  function renderComposerContext() {
    const room = state.rooms.get(state.current);
    const c = state.composer;
    const m = c && room ? room.messages.get(c.seq) : null;
    $('composer-context').hidden = !m;
    if (m) $('composer-context-text').textContent = c.mode === 'edit' ? 'Editing your message' : `Replying to ${m.sender_name}: ${snippet(m)}`;
  }

  function cancelComposer() {
    if (state.composer && state.composer.mode === 'edit') $('composer-input').value = '';
    state.composer = null;
    renderComposerContext();
  }

  function updateComposer() {
    const room = state.rooms.get(state.current);
    const muted = room && room.mutedUntil;
    const status = $('composer-status');
    status.hidden = !muted;
    if (muted) {
      status.textContent = muted === 'forever'
        ? 'You are muted in this room.'
        : `You are muted in this room until ${new Date(muted).toLocaleString()}.`;
    }
    // Sending while disconnected is allowed: it waits for the connection.
    const usable = Boolean(room) && !muted;
    $('composer-input').disabled = !usable;
    $('send-button').disabled = !usable;
    $('file-input').disabled = !usable;
  }

  function submitComposer() {
    const room = state.rooms.get(state.current);
    const input = $('composer-input');
    const text = input.value;
    if (!room || !text.trim()) return;
    if (text.length > MAX_TEXT) {
      showNotice(`A message holds at most ${MAX_TEXT} characters.`);
      return;
    }
    const c = state.composer;
    if (c && c.mode === 'edit') {
      request({ type: 'edit', room: room.id, seq: c.seq, text })
        .then((ack) => updateMessage(room.id, ack.message))
        .catch(noticeOf);
    } else {
      sendMessage(room.id, text, c && c.mode === 'reply' ? { reply_to: c.seq } : {});
    }
    input.value = '';
    // Others stop showing us as typing when the message lands, so the next
    // keystroke starts a new burst rather than waiting out the throttle.
    state.lastTypingSent = 0;
    state.composer = null;
    renderComposerContext();
  }

  function upload(file) {
    const room = state.rooms.get(state.current);
    if (!room || !file) return;
    const input = $('composer-input');
    const editing = state.composer && state.composer.mode === 'edit';
    const caption = editing ? '' : input.value.trim();
    const replyTo = state.composer && state.composer.mode === 'reply' ? state.composer.seq : undefined;
    const progress = $('upload-progress');
    progress.value = 0;
    progress.hidden = false;
    // XMLHttpRequest rather than fetch: only it reports upload progress.
    const attempt = (retried) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `${API}/rooms/${enc(room.id)}/attachments?filename=${enc(file.name)}`);
      xhr.setRequestHeader('Authorization', `Bearer ${state.session.access}`);
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.addEventListener('progress', (event) => {
        if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
      });
      xhr.addEventListener('load', () => {
        if (xhr.status === 401 && !retried) {
          refreshTokens().then(() => attempt(true), () => { progress.hidden = true; });
          return;
        }
        progress.hidden = true;
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch {
          data = null;
        }
        if (xhr.status === 201 && data && data.attachment) {
          const extra = { attachment_id: data.attachment.id, filename: data.attachment.filename };
          if (replyTo) extra.reply_to = replyTo;
          sendMessage(room.id, caption, extra);
          if (caption) {
            input.value = '';
            state.composer = null;
            renderComposerContext();
          }
        } else if (xhr.status === 413) {
          showNotice(`${file.name} is too large to send.`);
        } else {
          showNotice((data && data.error && data.error.message) || `The upload failed (${xhr.status}).`);
        }
      });
      xhr.addEventListener('error', () => {
        progress.hidden = true;
        showNotice('The upload failed: the server cannot be reached.');
      });
      xhr.send(file);
    };
    attempt(false);
  }

  // ---------------------------------------------------------------- members

  function renderMembers(room) {
    if (room.id !== state.current) return;
    const list = $('member-list');
    const moderator = room.kind === 'group' && (room.role === 'owner' || room.role === 'admin');
    const rank = { owner: 0, admin: 1, member: 2 };
    const members = [...(room.members || [])].sort((a, b) => rank[a.role] - rank[b.role] || a.username.localeCompare(b.username));
    list.replaceChildren(...members.map((m) => {
      const li = h('li', { dataset: { userId: m.user_id, username: m.username } },
        presenceDot(m.user_id),
        h('span', { class: 'member-name', text: m.username }),
        m.role !== 'member' ? h('span', { class: 'role', text: m.role }) : null);
      if (moderator && m.user_id !== myId() && m.role !== 'owner') {
        const select = h('select', { 'aria-label': `Moderation action for ${m.username}` },
          h('option', { value: 'kick', text: 'Kick' }),
          h('option', { value: 'ban', text: 'Ban' }),
          h('option', { value: 'mute-hour', text: 'Mute for an hour' }),
          h('option', { value: 'mute', text: 'Mute' }),
          h('option', { value: 'unmute', text: 'Unmute' }),
          m.role === 'member' ? h('option', { value: 'promote', text: 'Make admin' }) : h('option', { value: 'demote', text: 'Remove admin' }));
        const apply = h('button', { type: 'button', text: 'Apply', 'aria-label': `Apply to ${m.username}`, onclick: () => moderate(room, m, select.value) });
        li.append(h('span', { class: 'moderate' }, select, apply));
      }
      return li;
    }));
    $('add-member-form').hidden = !(moderator && room.visibility === 'private');
  }

  async function moderate(room, member, choice) {
    const body = choice === 'mute-hour'
      ? { action: 'mute', user_id: member.user_id, duration_s: 3600 }
      : { action: choice, user_id: member.user_id };
    try {
      await api('POST', `/rooms/${enc(room.id)}/moderation`, body);
      const done = { kick: 'kicked', ban: 'banned', mute: 'muted', unmute: 'unmuted', promote: 'made admin', demote: 'no longer admin' };
      showNotice(`${member.username}: ${done[body.action]}.`);
      await loadMembers(room);
    } catch (error) {
      noticeOf(error);
    }
  }

  // ---------------------------------------------------------------- sidebar

  async function loadPublic() {
    const list = $('public-list');
    try {
      const data = await api('GET', '/rooms/public');
      list.replaceChildren(...data.rooms.map((r) => {
        const member = state.rooms.has(r.id);
        return h('li', { dataset: { room: r.id } },
          h('span', { class: 'grow', text: `# ${r.name}` }),
          h('button', {
            type: 'button',
            class: member ? 'secondary' : '',
            text: member ? 'Open' : 'Join',
            'aria-label': `${member ? 'Open' : 'Join'} ${r.name}`,
            onclick: () => (member ? openRoom(r.id) : join(r.id)),
          }));
      }));
      if (!data.rooms.length) list.replaceChildren(h('li', { class: 'hint', text: 'No public rooms yet.' }));
    } catch (error) {
      noticeOf(error);
    }
  }

  async function join(id) {
    try {
      const data = await api('POST', `/rooms/${enc(id)}/join`);
      roomFrom({ ...data.room, role: 'member' });
      renderRooms();
      openRoom(id);
      loadPublic();
    } catch (error) {
      noticeOf(error);
    }
  }

  let searchTimer = 0;
  function searchUsers() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const q = $('user-search').value.trim().toLowerCase();
      const list = $('user-results');
      if (!q) {
        list.replaceChildren();
        return;
      }
      try {
        const data = await api('GET', `/users?q=${enc(q)}`);
        const users = data.users.filter((u) => u.id !== myId());
        for (const u of users) {
          state.names.set(u.id, u.username);
          if (u.status) state.presence.set(u.id, u.status);
        }
        list.replaceChildren(...users.map((u) => h('li', { dataset: { userId: u.id } },
          presenceDot(u.id),
          h('span', { class: 'grow', text: u.display_name && u.display_name !== u.username ? `${u.username} (${u.display_name})` : u.username }),
          h('button', { type: 'button', text: 'Message', 'aria-label': `Message ${u.username}`, onclick: () => openDm(u) }))));
        if (!users.length) list.replaceChildren(h('li', { class: 'hint', text: 'Nobody by that name.' }));
      } catch (error) {
        noticeOf(error);
      }
    }, 250);
  }

  async function openDm(user) {
    try {
      const data = await api('POST', '/dms', { user_id: user.id });
      const room = roomFrom({ ...data.room, role: 'member' });
      room.peer = user.id;
      renderRooms();
      openRoom(room.id);
    } catch (error) {
      noticeOf(error);
    }
  }

  // ---------------------------------------------------------------- wiring

  $('auth-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const register = event.submitter && event.submitter.value === 'register';
    const username = $('auth-username').value.trim().toLowerCase();
    const password = $('auth-password').value;
    const error = $('auth-error');
    error.textContent = '';
    const body = { username, password };
    const display = $('auth-display').value.trim();
    if (register && display) body.display_name = display;
    for (const button of event.currentTarget.querySelectorAll('button')) button.disabled = true;
    try {
      const reply = await api('POST', register ? '/auth/register' : '/auth/login', body);
      setSession(reply);
      $('auth-password').value = '';
      enter();
    } catch (e) {
      error.textContent = e.message;
    } finally {
      for (const button of $('auth-form').querySelectorAll('button')) button.disabled = false;
    }
  });

  $('logout-button').addEventListener('click', () => {
    const session = signOut('');
    if (session) {
      fetch(`${API}/auth/logout`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: session.refresh }),
      }).catch(() => {});
    }
  });

  $('reconnect-now').addEventListener('click', connect);

  $('toggle-sidebar').addEventListener('click', (event) => {
    const open = document.body.classList.toggle('show-sidebar');
    event.currentTarget.setAttribute('aria-expanded', String(open));
    if (open) $('sidebar').querySelector('button, summary').focus();
  });

  $('toggle-members').addEventListener('click', (event) => {
    const open = document.body.classList.toggle('show-members');
    event.currentTarget.setAttribute('aria-expanded', String(open));
  });

  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    // Escape closes an open drawer (phones and tablets).
    for (const [cls, button] of [['show-sidebar', 'toggle-sidebar'], ['show-members', 'toggle-members']]) {
      if (document.body.classList.contains(cls)) {
        document.body.classList.remove(cls);
        $(button).setAttribute('aria-expanded', 'false');
        $(button).focus();
      }
    }
  });

  $('leave-room').addEventListener('click', async () => {
    const room = state.rooms.get(state.current);
    if (!room) return;
    try {
      await api('POST', `/rooms/${enc(room.id)}/leave`);
      removeRoom(room.id, `You left ${roomLabel(room)}.`);
    } catch (error) {
      noticeOf(error);
    }
  });

  $('create-room-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('new-room-name').value.trim();
    if (!name) return;
    try {
      const data = await api('POST', '/rooms', { name, visibility: $('new-room-visibility').value });
      roomFrom({ ...data.room, role: 'owner' });
      $('new-room-name').value = '';
      $('create-room').open = false;
      renderRooms();
      openRoom(data.room.id);
    } catch (error) {
      noticeOf(error);
    }
  });

  $('browse').addEventListener('toggle', (event) => {
    if (event.currentTarget.open) loadPublic();
  });
  $('public-refresh').addEventListener('click', loadPublic);

  $('user-search').addEventListener('input', searchUsers);
  $('user-search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    searchUsers();
  });

  $('add-member-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const room = state.rooms.get(state.current);
    const name = $('add-member-name').value.trim().toLowerCase();
    if (!room || !name) return;
    try {
      const data = await api('GET', `/users?q=${enc(name)}`);
      const user = data.users.find((u) => u.username === name);
      if (!user) throw new ApiError('not_found', `Nobody is called ${name}.`);
      await api('POST', `/rooms/${enc(room.id)}/members`, { user_id: user.id });
      $('add-member-name').value = '';
      await loadMembers(room);
    } catch (error) {
      noticeOf(error);
    }
  });

  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    submitComposer();
  });

  $('composer-input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer();
    } else if (event.key === 'Escape' && state.composer) {
      cancelComposer();
    }
  });

  $('composer-input').addEventListener('input', () => {
    const now = Date.now();
    const editing = state.composer && state.composer.mode === 'edit';
    if (!state.current || editing || !$('composer-input').value || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
    if (sendFrame({ type: 'typing', room: state.current })) state.lastTypingSent = now;
  });

  $('composer-cancel').addEventListener('click', () => {
    cancelComposer();
    $('composer-input').focus();
  });

  $('file-input').addEventListener('change', (event) => {
    const file = event.currentTarget.files[0];
    event.currentTarget.value = '';
    upload(file);
  });

  $('load-older').addEventListener('click', () => {
    const room = state.rooms.get(state.current);
    if (room) loadOlder(room);
  });

  $('scroller').addEventListener('scroll', () => {
    const room = state.rooms.get(state.current);
    if (room && $('scroller').scrollTop < 40) loadOlder(room);
  });

  // ---------------------------------------------------------------- start

  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    saved = null;
  }
  if (saved && saved.refresh) {
    state.session = saved;
    if (saved.expiresAt - Date.now() < 5000) {
      // A refused refresh signs out; an unreachable server is retried.
      refreshTokens().then(enter, () => {
        if (state.session) enter();
      });
    } else {
      enter();
    }
  } else {
    $('login-view').hidden = false;
    $('auth-username').focus();
  }
})();
