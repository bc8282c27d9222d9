// What the API reference leaves out (typedoc.json loads this plugin), so it shows what a user of the
// package can touch:
// - members a class inherits from a library (eventemitter3's eleven methods on LeaderElector and
//   Session): the classes link the events they emit instead. The language's own (Error's message,
//   cause, stack) stay;
// - base classes of ours that are not exported (Primitive, LockPrimitive): they leave the hierarchy, and
//   what a subclass inherits from them reads as its own.
import { Converter, DeclarationReflection, ReferenceType } from "typedoc";

const LIBRARY = /[/\\]node_modules[/\\](?!typescript[/\\]|@types[/\\]node[/\\])/;

/** @param {import("typedoc").Application} app */
export function load(app) {
  const declarations = (project) =>
    Object.values(project.reflections).filter((reflection) => reflection instanceof DeclarationReflection);

  // Before TypeDoc works out inheritance and the hierarchy from the base classes.
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, ({ project }) => {
    const undocumentedBase = (type) =>
      type instanceof ReferenceType && !type.reflection && type.package === project.packageName;
    for (const reflection of declarations(project)) {
      if (!reflection.extendedTypes?.some(undocumentedBase)) continue;
      reflection.extendedTypes = reflection.extendedTypes.filter((type) => !undocumentedBase(type));
      if (reflection.extendedTypes.length === 0) delete reflection.extendedTypes;
    }
  });

  app.converter.on(Converter.EVENT_RESOLVE_END, ({ project }) => {
    // Members and signatures inherited from, or overriding, a class the reference does not show.
    const hidden = (type) => type !== undefined && !type.reflection;
    for (const reflection of Object.values(project.reflections)) {
      if (hidden(reflection.inheritedFrom) && reflection.sources?.some((source) => LIBRARY.test(source.fullFileName))) {
        project.removeReflection(reflection);
        continue;
      }
      if (reflection.flags.isExternal) continue;
      // From a base of ours left out above: the subclass's own.
      if (hidden(reflection.inheritedFrom)) delete reflection.inheritedFrom;
      if (hidden(reflection.overwrites)) delete reflection.overwrites;
    }
  });
}
