// The category tree as a <select> wants it.

/** [id, label] pairs of the unarchived categories, in tree order, indented by depth. */
export function categoryOptions(categories) {
  // Indented by depth along each category's path ("/1/6/"), sorted by the tree.
  const byId = new Map(categories.map((c) => [c.id, c]));
  const key = (c) =>
    c.path
      .split("/")
      .filter(Boolean)
      .map((id) => byId.get(Number(id))?.name ?? id)
      .join("\u0000");
  return [...categories]
    .filter((c) => !c.archived_at)
    .sort((a, b) => key(a).localeCompare(key(b)))
    .map((c) => {
      const depth = c.path.split("/").filter(Boolean).length - 1;
      return [c.id, `${"\u00a0\u00a0".repeat(depth)}${c.name}`];
    });
}
