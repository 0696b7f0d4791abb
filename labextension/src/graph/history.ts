/** Undo and redo over snapshots of a document (JSON text), bounded. */
export class History {
  private undoStack: string[] = [];
  private redoStack: string[] = [];

  constructor(private readonly limit = 200) {}

  /** Remember `before`, the state a change is about to leave. */
  push(before: string): void {
    if (this.undoStack[this.undoStack.length - 1] === before) {
      return;
    }
    this.undoStack.push(before);
    if (this.undoStack.length > this.limit) {
      this.undoStack.shift();
    }
    this.redoStack = [];
  }

  /** The state to go back to from `current`, or null. */
  undo(current: string): string | null {
    const prev = this.undoStack.pop();
    if (prev === undefined) {
      return null;
    }
    this.redoStack.push(current);
    return prev;
  }

  redo(current: string): string | null {
    const next = this.redoStack.pop();
    if (next === undefined) {
      return null;
    }
    this.undoStack.push(current);
    return next;
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }

  clear(): void {
    this.undoStack = [];
    this.redoStack = [];
  }
}
