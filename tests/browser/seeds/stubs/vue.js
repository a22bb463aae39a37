// SCAFFOLDING: the one Vue 2 call the seed's store makes (Vue.use(Vuex)).
const Vue = {
  use(plugin) {
    if (plugin && typeof plugin.install === "function") plugin.install(Vue);
  },
};
export default Vue;
