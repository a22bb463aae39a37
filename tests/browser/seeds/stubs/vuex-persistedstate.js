// SCAFFOLDING: vuex-persistedstate reduced to its default behaviour: restore the state from
// localStorage["vuex"] when the store is created, save it after every mutation.
export default function createPersistedState({ key = "vuex", storage = window.localStorage } = {}) {
  return (store) => {
    const saved = storage.getItem(key);
    if (saved) Object.assign(store.state, JSON.parse(saved));
    store.subscribe((_mutation, state) => storage.setItem(key, JSON.stringify(state)));
  };
}
