/** A page: draws itself into `main` and returns what stops it (streams, timers). */
export type View = (main: HTMLElement, parameters: URLSearchParams) => (() => void) | void;
