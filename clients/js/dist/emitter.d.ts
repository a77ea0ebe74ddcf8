type Listener<T> = (value: T) => void;
/** A minimal typed event emitter: `on` returns the function that removes the listener. */
export declare class Emitter<Events extends Record<string, unknown>> {
    private listeners;
    on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void;
    off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void;
    protected emit<K extends keyof Events>(event: K, value: Events[K]): void;
}
export {};
