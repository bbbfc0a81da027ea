export * from "./replica/quorums.js";
