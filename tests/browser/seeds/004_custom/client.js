// Seed 004: axios interceptors with a single-flight refresh and a queue of waiting requests,
// against a custom backend (POST /api/refresh-token {"refreshToken"} -> {"jwtToken"}). The code
// between the BEGIN/END SEED markers is the seed's, verbatim, except the lines marked BASE URL.
import axios from "axios";  // SCAFFOLDING: the tutorial's module imports axios

// SCAFFOLDING: the localStorage helpers the tutorial leaves to the reader.
const getAccessToken = () => localStorage.getItem("jwtToken");
const getRefreshToken = () => localStorage.getItem("refreshToken");
const setAccessToken = (token) => localStorage.setItem("jwtToken", token);
const removeTokens = () => { localStorage.removeItem("jwtToken"); localStorage.removeItem("refreshToken"); };

// ---- BEGIN SEED --------------------------------------------------------------------------------
const PROD_BASE_URL = "__GATEWAY__";  // BASE URL (was "http://localhost:5000")

const BASE_URL = PROD_BASE_URL;  // BASE URL (was `import.meta.env.VITE_BASE_URL ?? PROD_BASE_URL`, Vite only)

const apiClient = axios.create({ baseURL: BASE_URL });

apiClient.interceptors.request.use((config) => {
  config.headers.Authorization = "Bearer " + getAccessToken();
  return config;
});

// Setting up variables and functions
let isRefreshingToken = false; // A flag to prevent concurrent token refresh
let requestQueue = []; // Store requests that need a refreshed token

const addRequestToQueue = (callback) => {
  requestQueue.push(callback);
};

const processRequestQueue = (accessToken) => {
  while (requestQueue.length) {
    const currentRequest = requestQueue.shift();
    currentRequest(accessToken);
  }
};

// Axios response interceptor
apiClient.interceptors.response.use(undefined, (error) => {
  const originalRequest = error?.config;
  const refreshToken = getRefreshToken(); // Retrieve the refresh token

  if (
    error?.response?.status === 401 &&
    !originalRequest?._retry &&
    !!refreshToken
  ) {
    originalRequest._retry = true; // Prevent retrying the same request

    // Start the token refresh process if it's not already in progress
    if (!isRefreshingToken) {
      isRefreshingToken = true;

      // Make a request to refresh the token
      axios
        .post(`${BASE_URL}/api/refresh-token`, {
          refreshToken,
        })
        .then(({ data = {} }) => {
          setAccessToken(data?.jwtToken); // Update the access token
          processRequestQueue(data?.jwtToken); // Process pending requests
        })
        .catch(() => {
          removeTokens(); // Remove tokens if the refresh fails
          processRequestQueue(false); // Process pending requests with a failure flag
        })
        .finally(() => {
          isRefreshingToken = false;
        });
    }

    // Queue the request for later retry
    return new Promise((resolve, reject) => {
      addRequestToQueue((accessToken) => {
        if (accessToken) {
          originalRequest.headers["Authorization"] = "Bearer " + accessToken;
          resolve(axios(originalRequest));
        }
        reject(originalRequest);
      });
    });
  }

  return Promise.reject(error);
});
// ---- END SEED ----------------------------------------------------------------------------------

// SCAFFOLDING: the tutorial shows no login; this one stores what the custom login answers.
export async function login(username, password) {
  const { data } = await axios.post(`${BASE_URL}/api/login`, { username, password });
  localStorage.setItem("jwtToken", data.jwtToken);
  localStorage.setItem("refreshToken", data.refreshToken);
}

export { apiClient, getAccessToken, getRefreshToken };
