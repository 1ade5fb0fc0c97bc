/**
 * consumer.js — the `consume` node's loop: claims tasks in batches and emits one msg per
 * task, never more than `concurrency` in flight.
 * @module consumer
 */
'use strict';

const { buildDebug } = require('./messages');

/**
 * the consumer's key of one attempt at a task
 * @private
 * @returns {string}
 */
const attemptKey = (task) => `${task.id}#${task.attempts}`;

/**
 * The `consume` source: claims tasks in batches and emits one msg per task
 * (`msg.payload` = the task's payload, `msg.task` = the task), never more than
 * `concurrency` in flight. A slot frees when any node settles the task with
 * updateTaskStatus (or snoozeTask), or when its lease runs out. While the queue is empty
 * it waits for a wake-up (an insert in this runtime, or PostgreSQL NOTIFY from another),
 * polling at least once a second; while it is paused the status says so. On stop, tasks
 * in flight are left to their lease.
 *
 * With `heartbeat` on, every task in flight gets a heartbeat each third of the lease, so
 * a long flow keeps its task while Node-RED runs. A task cancelled while in flight (its
 * heartbeat, settle or snooze answers `reason: "cancelled"`, or a flow of this runtime
 * cancels it) frees its slot and, with `cancelOutput` on, sends a cancel signal on the
 * second output: `{payload: {id, reason: 'cancelled'}, task, topic: 'cancelled'}`.
 */
class Consumer {
  /**
   * @param {object} node the Node-RED node (send, status, error)
   * @param {function(): Promise<Registry>} getRegistry the config node's open connection
   * @param {object} opts
   * @param {string} [opts.queue] default `default`
   * @param {(number|string)} [opts.concurrency] most tasks in flight, 1–1000, default 4
   * @param {(number|string)} [opts.leaseMs] lease of each claimed task, default 30000
   * @param {boolean} [opts.debug] add `msg._debug`
   * @param {(boolean|string)} [opts.heartbeat] heartbeat the tasks in flight every leaseMs/3 (default off)
   * @param {(boolean|string)} [opts.cancelOutput] send cancel signals on a second output (default off)
   * @param {string} opts.workerId the lease holder's id
   * @param {function(number): string} opts.statusText the status text for n in flight
   * @param {string} [opts.pausedText] the status text while the queue is paused
   */
  constructor(node, getRegistry, opts) {
    this.node = node;
    this.getRegistry = getRegistry;
    this.queue = opts.queue || 'default';
    this.concurrency = Math.max(1, Math.min(1000, Number(opts.concurrency) || 4));
    this.leaseMs = Math.max(1000, Number(opts.leaseMs) || 30000);
    this.debug = opts.debug === true || opts.debug === 'true';
    this.heartbeat = opts.heartbeat === true || opts.heartbeat === 'true';
    this.cancelOutput = opts.cancelOutput === true || opts.cancelOutput === 'true';
    this.pausedText = opts.pausedText || 'paused';
    this.paused = false;
    this.pauseCheckedAt = 0;
    this.workerId = opts.workerId;
    this.statusText = opts.statusText;
    this.inFlight = new Map();
    this.idleMs = 0;
    this.timer = null;
    this.stopped = false;
    // claims on their way to the database, and the slots they may fill
    this.claiming = 0;
    this.reserved = 0;
    this.empty = false;
    // one entry per attempt (`id#attempts`): a task that failed, came back after its
    // backoff and was claimed again before its first settle reached us holds two slots
    // until both are settled, never one
    this.onSettled = (id, task) => {
      if (task && task.status === 'cancelled') this.cancelled(id);
      else this.settle(attemptKey(task));
    };
    this.onHeartbeat = (id, task) => this.extend(attemptKey(task));
    this.onCancelled = (id) => this.cancelled(id);
  }

  /**
   * A task in flight was cancelled: its slots free and, with `cancelOutput`, a cancel
   * signal goes out on the second output (once per attempt in flight).
   * @private
   */
  cancelled(id) {
    for (const [key, slot] of this.inFlight) {
      if (slot.task.id !== id) continue;
      this.settle(key);
      if (this.cancelOutput && !this.stopped) {
        this.node.send([null, { payload: { id, reason: 'cancelled' }, task: slot.task, topic: 'cancelled' }]);
      }
    }
  }

  /**
   * A heartbeat pushed the lease of one attempt forward: its slot is kept a lease longer.
   * @private
   */
  extend(key) {
    const slot = this.inFlight.get(key);
    if (!slot) return;
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.settle(key), this.leaseMs);
  }

  /**
   * One heartbeat for every task in flight (with `heartbeat` on); a refused one frees its
   * slot (a cancelled task's through the `cancelled` event).
   * @private
   */
  async beat() {
    const registry = this.registry;
    if (!registry || this.stopped) return;
    await Promise.all([...this.inFlight].map(async ([key, slot]) => {
      try {
        await registry.run('heartbeat', { id: slot.task.id, workerId: this.workerId, leaseMs: this.leaseMs });
      } catch (err) {
        if (err.code === 'DBC_LEASE_LOST' && err.reason !== 'cancelled') this.settle(key);
        else if (err.code !== 'DBC_LEASE_LOST') this.node.warn(err);
      }
    }));
  }

  /**
   * Whether the queue is paused, read at most every 5 s while claims come back empty (a
   * paused queue's always do); the status shows it.
   * @private
   */
  async checkPaused(registry) {
    if (Date.now() - this.pauseCheckedAt < 5000) return;
    this.pauseCheckedAt = Date.now();
    const r = await registry.run('getQueueStats', { queue: this.queue });
    const paused = Boolean(r.value.queues[0] && r.value.queues[0].paused);
    if (paused !== this.paused) {
      this.paused = paused;
      this.showStatus();
    }
  }

  /** Starts polling. */
  start() {
    this.schedule(0);
    if (this.heartbeat) {
      this.beatTimer = setInterval(() => this.beat(), Math.max(100, Math.floor(this.leaseMs / 3)));
    }
  }

  /**
   * Polls after `ms` (0: on the next turn), unless a poll is already due.
   * @private
   */
  schedule(ms) {
    if (this.stopped || this.timer) return;
    const run = () => {
      this.timer = null;
      this.poll();
    };
    // setTimeout(0) waits at least 1 ms; a wake-up or a freed slot polls on the next turn
    if (ms > 0) {
      const t = setTimeout(run, ms);
      this.timer = { cancel: () => clearTimeout(t) };
    } else {
      const t = setImmediate(run);
      this.timer = { cancel: () => clearImmediate(t) };
    }
  }

  /**
   * Frees the slot of one attempt (`id#attempts`), settled or its lease run out.
   * @private
   */
  settle(key) {
    const slot = this.inFlight.get(key);
    if (slot === undefined) return;
    clearTimeout(slot.timer);
    this.inFlight.delete(key);
    this.showStatus();
    this.schedule(0);
  }

  /**
   * Shows the number of tasks in flight.
   * @private
   */
  showStatus() {
    // a busy consumer settles thousands of tasks a second: the status (and its translated
    // text) follows at most every 250 ms, and always ends on the current count
    if (this.statusTimer) {
      this.statusDirty = true;
      return;
    }
    if (this.paused && this.inFlight.size === 0) this.node.status({ fill: 'yellow', shape: 'ring', text: this.pausedText });
    else this.node.status({ fill: 'blue', shape: this.inFlight.size ? 'dot' : 'ring', text: this.statusText(this.inFlight.size) });
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      if (this.statusDirty && !this.stopped) {
        this.statusDirty = false;
        this.showStatus();
      }
    }, 250);
  }

  /**
   * One claim: fills free slots, or waits for work while the queue is empty.
   * @private
   */
  async poll() {
    // A busy consumer works as a pipeline: a claim takes at most a quarter of its slots
    // (at least 25, or all when fewer), and up to two claims are on their way at once,
    // so the database claims the next tasks while the flow runs the last ones, instead
    // of the two taking turns. When the last claim found nothing, one claimer waits for
    // work alone.
    if (this.stopped || this.claiming >= 2 || (this.claiming > 0 && this.empty)) return;
    const free = this.concurrency - this.inFlight.size - this.reserved;
    if (free <= 0) return; // a settle or an expired lease schedules the next poll
    this.claiming += 1;
    let held = Math.min(free, Math.max(Math.ceil(this.concurrency / 4), Math.min(this.concurrency, 25)));
    this.reserved += held;
    try {
      const registry = await this.getRegistry();
      if (this.registry !== registry) {
        if (this.registry) this.listen(this.registry, 'off');
        this.registry = registry;
        this.listen(registry, 'on');
      }
      const startedAt = Date.now();
      const t0 = this.debug ? performance.now() : 0;
      const r = await registry.run('claimTasks', { queue: this.queue, limit: held, leaseMs: this.leaseMs, workerId: this.workerId }, { debug: this.debug });
      this.reserved -= held;
      held = 0;
      this.empty = r.value.length === 0;
      if (this.stopped) return;
      if (!this.empty && this.paused) this.paused = false;
      for (const task of r.value) {
        const key = attemptKey(task);
        this.inFlight.set(key, { task, timer: setTimeout(() => this.settle(key), this.leaseMs) });
        const msg = { payload: task.payload, task };
        if (this.debug) msg._debug = buildDebug('consume', startedAt, t0, r.debug);
        this.node.send(msg);
      }
      this.showStatus();
      if (r.value.length === 0 && !this.stopped) {
        await this.checkPaused(registry);
        // idle: sleep until woken by new work (same runtime, or NOTIFY on PostgreSQL);
        // the timeout is the polling safety net
        await registry.waitForTasks(this.queue, 1000);
      }
      this.idleMs = 0;
    } catch (err) {
      this.idleMs = Math.min(5000, Math.max(500, this.idleMs * 2));
      this.node.error(err); // a DatabaseError from the database layer, as it is
    } finally {
      this.reserved -= held;
      this.claiming -= 1;
    }
    this.schedule(this.idleMs);
  }

  /** Stops polling; tasks in flight stay leased until settled or expired. */
  stop() {
    this.stopped = true;
    if (this.timer) this.timer.cancel();
    clearTimeout(this.statusTimer);
    clearInterval(this.beatTimer);
    for (const slot of this.inFlight.values()) clearTimeout(slot.timer);
    this.inFlight.clear();
    if (this.registry) this.listen(this.registry, 'off');
  }

  /**
   * Adds (`on`) or removes (`off`) this consumer's listeners on a registry.
   * @private
   */
  listen(registry, how) {
    registry[how]('settled', this.onSettled);
    registry[how]('heartbeat', this.onHeartbeat);
    registry[how]('cancelled', this.onCancelled);
  }
}

module.exports = { Consumer };
