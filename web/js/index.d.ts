// Types of the strata-web package (index.js).

export type BackendChoice = 'auto' | 'webgpu' | 'wasm';

export interface Progress {
  loaded: number;
  total: number;
  /** 'download': fetching into the cache; 'cached': found there; 'weights': onto the backend. */
  phase: 'download' | 'cached' | 'weights';
}

export interface LoadOptions {
  /** Default 'auto': WebGPU when an adapter is there and the model loads on it, else wasm CPU. */
  backend?: BackendChoice;
  /** KV-cache positions (default 2048, capped at the model's context length). */
  contextLength?: number;
  /** Bytes of resident weights; the layers past it stream from the model file. */
  maxMemory?: number;
  /** Keep downloads in OPFS (or the Cache API); default true. */
  cache?: boolean;
  onProgress?: (p: Progress) => void;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** 0 is greedy. Defaults are llama.cpp's: 0.8, topK 40, topP 0.95, minP 0.05. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** Subtracted from every token seen in the last 64 (OpenAI's presence_penalty), [-2, 2]. */
  presencePenalty?: number;
  /** Subtracted once per occurrence in the last 64 (frequency_penalty), [-2, 2]. */
  frequencyPenalty?: number;
  seed?: number;
}

export interface AdapterInfo {
  name: string;
  backend: string;
  device_type: string;
  shader_f16: boolean;
  subgroups: boolean;
  max_storage_buffer_binding_size: number;
  max_buffer_size: number;
  [key: string]: unknown;
}

export interface ModelInfo {
  backend: 'webgpu' | 'wasm';
  backendName: string;
  adapter: AdapterInfo | null;
  /** Why 'auto' fell back to wasm CPU, if it did. */
  fallbackReason: string | null;
  model: { name: string; architecture: string; layers: number; vocabSize: number; contextLength: number; bytes: number; chatTemplate: boolean };
  memory: { deviceBytes: number; streamedLayers: number; layers: number };
}

export interface GenerationStats {
  promptTokens: number;
  tokens: number[];
  stop: 'EndOfGeneration' | 'MaxTokens' | 'Cancelled' | null;
  timeToFirstTokenMs: number;
  prefillTokensPerS: number;
  decodeMs: number;
  decodeTokensPerS: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export declare class Model {
  readonly info: ModelInfo;
  readonly lastStats: GenerationStats | null;
  generate(prompt: string, options?: GenerateOptions): AsyncIterableIterator<string>;
  chat(messages: ChatMessage[], options?: GenerateOptions): AsyncIterableIterator<string>;
  abort(): void;
  dispose(): Promise<void>;
}

export declare function load(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, options?: LoadOptions): Promise<Model>;
export declare function cachedModels(): Promise<{ url: string; bytes: number | null; complete: boolean }[]>;
export declare function deleteCachedModel(url: string): Promise<void>;
