// SCAFFOLDING: the part of Vuex 3 the seed's store uses: state, commit, dispatch (actions get
// { state, commit, dispatch, getters } and return promises), read-only getters, plugins, subscribe.
class Store {
  constructor({ state = {}, mutations = {}, actions = {}, getters = {}, plugins = [] }) {
    this.state = state;
    this._mutations = mutations;
    this._actions = actions;
    this._subscribers = [];
    this.getters = {};
    for (const [name, getter] of Object.entries(getters)) {
      Object.defineProperty(this.getters, name, { get: () => getter(this.state, this.getters), enumerable: true });
    }
    this.commit = this.commit.bind(this);
    this.dispatch = this.dispatch.bind(this);
    plugins.forEach((plugin) => plugin(this));
  }

  commit(type, payload) {
    if (!this._mutations[type]) throw new Error(`[vuex] unknown mutation type: ${type}`);
    this._mutations[type](this.state, payload);
    this._subscribers.forEach((fn) => fn({ type, payload }, this.state));
  }

  dispatch(type, payload) {
    if (!this._actions[type]) return Promise.reject(new Error(`[vuex] unknown action type: ${type}`));
    const context = { state: this.state, commit: this.commit, dispatch: this.dispatch, getters: this.getters };
    return Promise.resolve(this._actions[type](context, payload));
  }

  subscribe(fn) {
    this._subscribers.push(fn);
  }
}

export default { Store, install() {} };
