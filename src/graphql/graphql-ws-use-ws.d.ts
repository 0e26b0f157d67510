/**
 * `graphql-ws/use/ws` is only reachable through the package's `exports` map,
 * which this project's `moduleResolution: node` does not read; Node does, at
 * run time. Its types, from the file the map points to.
 */
declare module 'graphql-ws/use/ws' {
  export { type Extra, useServer } from 'graphql-ws/dist/use/ws';
}
