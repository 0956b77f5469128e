// Who is signed in: the project, the role and what it may do (from GET /ui/session).
export const session = { project: null, role: null, permissions: new Set() };

export function may(permission) {
  return session.permissions.has(permission);
}
